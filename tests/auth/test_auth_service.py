"""Access key primitives, authenticate() and bootstrap() against real stores."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from callbridge.auth.service import (
    BootstrapResult,
    authenticate,
    bootstrap,
    generate_access_key,
    hash_token,
    token_prefix,
)
from callbridge.store import Store


def test_generate_access_key_shape_and_uniqueness() -> None:
    keys = {generate_access_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"vb_[A-Za-z0-9]{32}", key)
    # All 62 symbols show up over enough keys (the alphabet is not truncated).
    assert len({c for key in keys for c in key[3:]}) == 62


def test_hash_and_prefix() -> None:
    token = "vb_a3Bf9xKmQQQQQQQQQQQQQQQQQQQQQQQQ"
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token_prefix(token) == "vb_a3Bf9xKm"
    assert hash_token(token) != hash_token(token.lower())


async def test_authenticate(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    _, token = await store.access_keys.create(workspace.id)
    assert await authenticate(store, token) == workspace
    for bad in (None, "", "vb_", token + "0", token.upper(), "Bearer " + token, "x" * 5000):
        assert await authenticate(store, bad) is None
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJ0eXBlIjoiYWdlbnQifQ.c2ln"
    assert await authenticate(store, jwt_like) is None


async def test_authenticate_refuses_deleted_and_expired_keys(store_url: str) -> None:
    now = [datetime(2026, 5, 1, tzinfo=UTC)]
    store = await Store.open(store_url, now=lambda: now[0])
    try:
        workspace = await store.workspaces.create("w")
        _, expiring_token = await store.access_keys.create(workspace.id, expire_seconds=86400)
        deleted, deleted_token = await store.access_keys.create(workspace.id)
        await store.access_keys.delete(workspace.id, deleted.id)
        assert await authenticate(store, deleted_token) is None
        assert await authenticate(store, expiring_token) == workspace
        now[0] += timedelta(days=2)
        assert await authenticate(store, expiring_token) is None
    finally:
        await store.close()


async def test_bootstrap_first_start_random_key(store: Store) -> None:
    result = await bootstrap(store, None)
    assert result is not None and result.created
    assert result.workspace.name == "default"
    assert re.fullmatch(r"vb_[A-Za-z0-9]{32}", result.access_key_plaintext)
    assert result.access_key_plaintext not in repr(result)
    assert result.token_prefix == result.access_key_plaintext[:11]
    assert await authenticate(store, result.access_key_plaintext) == result.workspace
    # Second start: nothing to do.
    assert await bootstrap(store, None) is None
    assert await store.workspaces.count() == 1


async def test_bootstrap_first_start_with_preset(store: Store) -> None:
    preset = "vb_preset-key_for_automation_0123"
    result = await bootstrap(store, preset)
    assert result is not None
    assert result == BootstrapResult(result.workspace, preset, created=True)
    assert result.workspace.name == "default"
    assert await authenticate(store, preset) == result.workspace
    # Re-running with the same preset is idempotent.
    assert await bootstrap(store, preset) is None
    assert len(await store.access_keys.list(result.workspace.id)) == 1


async def test_bootstrap_adds_new_preset_to_existing_workspace(store: Store) -> None:
    first = await bootstrap(store, None)
    assert first is not None
    preset = "vb_" + "Z" * 24
    added = await bootstrap(store, preset)
    assert added is not None and not added.created
    assert added.workspace == first.workspace
    assert added.access_key_plaintext == preset
    assert await authenticate(store, preset) == first.workspace
    assert await store.workspaces.count() == 1
    assert len(await store.access_keys.list(first.workspace.id)) == 2
    assert await bootstrap(store, preset) is None


async def test_bootstrap_does_not_resurrect_a_deleted_preset(store: Store) -> None:
    preset = "vb_" + "Q" * 24
    first = await bootstrap(store, preset)
    assert first is not None
    (key,) = await store.access_keys.list(first.workspace.id)
    await store.access_keys.delete(first.workspace.id, key.id)
    assert await bootstrap(store, preset) is None
    assert await authenticate(store, preset) is None


@pytest.mark.parametrize(
    "preset",
    ["", "abc", "vb_short", "xx_" + "a" * 30, "vb_" + "a" * 19, "vb_" + "a" * 25 + "!", "vb_ " * 9],
)
async def test_bootstrap_rejects_invalid_preset(store: Store, preset: str) -> None:
    with pytest.raises(ValueError, match="vb_") as info:
        await bootstrap(store, preset)
    if len(preset) > 3:
        assert preset not in str(info.value)  # the secret is never echoed
    assert await store.workspaces.count() == 0
