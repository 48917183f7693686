"""Injected randomness for branches, tags and Call-IDs."""

from __future__ import annotations

from callbridge.sip.ids import SecretIdSource, SeededIdSource, new_branch, new_call_id, new_tag


def test_seeded_source_is_reproducible_and_sized() -> None:
    a, b = SeededIdSource(9), SeededIdSource(9)
    assert [a.token(64) for _ in range(3)] == [b.token(64) for _ in range(3)]
    assert len(SeededIdSource().token(30)) == 8


def test_secret_source_and_helpers() -> None:
    ids = SecretIdSource()
    assert len(ids.token(64)) == 16 and ids.token(64) != ids.token(64)
    branch = new_branch(ids)
    assert branch.startswith("z9hG4bK") and len(branch) == 7 + 16
    assert len(new_tag(ids)) == 16
    call_id = new_call_id(ids, "192.0.2.1")
    assert call_id.endswith("@192.0.2.1") and len(call_id.split("@")[0]) == 32
