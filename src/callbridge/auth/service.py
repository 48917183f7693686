"""Access keys: generation, hashing, authentication and first-start bootstrap.

An access key is ``vb_`` followed by 32 random characters of ``[A-Za-z0-9]`` (about 190 bits
of entropy). The store keeps only its SHA-256 hex digest and its first 11 characters
(``token_prefix``, shown in lists). :func:`authenticate` is the single entry point every API
face (REST, event and media WebSockets, streaming surface) uses to turn a presented key into a
workspace.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callbridge.auth.model import Workspace

if TYPE_CHECKING:
    from callbridge.store.store import Store

log = logging.getLogger(__name__)

ACCESS_KEY_PREFIX = "vb_"
ACCESS_KEY_RANDOM_LENGTH = 32
TOKEN_PREFIX_LENGTH = 11
_ALPHABET = string.ascii_letters + string.digits

#: What an operator-supplied (preset) key must look like: our own keys match, and so do
#: keys minted by other tooling as long as they are long enough to be unguessable.
PRESET_KEY_PATTERN = re.compile(r"vb_[A-Za-z0-9_-]{20,256}")

#: Longest credential worth hashing; anything longer cannot be a key and is refused cheaply.
_MAX_CREDENTIAL_LENGTH = 512

DEFAULT_WORKSPACE_NAME = "default"


def generate_access_key() -> str:
    """A new random access key: ``vb_`` + 32 characters from ``secrets`` over [A-Za-z0-9]."""
    return ACCESS_KEY_PREFIX + "".join(
        secrets.choice(_ALPHABET) for _ in range(ACCESS_KEY_RANDOM_LENGTH)
    )


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256, lowercase hex (64 characters).

    A fast unsalted hash is the right tool here, unlike for passwords: keys are ~190 bits of
    randomness, so there is no dictionary to attack and brute force is hopeless regardless of
    hash speed, while a deterministic digest lets the key be found through a unique index in one
    look-up per request.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_prefix(token: str) -> str:
    """The displayable start of a token: its first 11 characters (``vb_`` + 8)."""
    return token[:TOKEN_PREFIX_LENGTH]


def is_access_key_shaped(value: str) -> bool:
    """True when ``value`` looks like an access key (``vb_`` prefix) rather than a JWT."""
    return value.startswith(ACCESS_KEY_PREFIX)


async def authenticate(store: Store, credential: str | None) -> Workspace | None:
    """The workspace an access key acts for, or ``None`` when it does not authenticate.

    ``None`` for a missing, empty, malformed, unknown, expired or deleted key, or for a key
    whose workspace was deleted; callers map that to 401 ``INVALID_CREDENTIALS`` (and a
    missing credential to ``AUTHENTICATION_REQUIRED`` before calling).

    Timing: the credential is hashed and the digest is looked up through a unique index; no
    secret is ever compared byte by byte in Python. The only timing signal is the index walk,
    and since an attacker cannot choose digests (that would need SHA-256 preimages), how far a
    walk gets says nothing useful about the stored keys. Missing and wrong-shaped credentials
    return early, which only reveals what the caller already knows.
    """
    if not credential or len(credential) > _MAX_CREDENTIAL_LENGTH:
        return None
    if not is_access_key_shaped(credential):
        return None
    key = await store.access_keys.find_by_token(credential)
    if key is None:
        return None
    return await store.workspaces.get(key.workspace_id)


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What :func:`bootstrap` did. ``access_key_plaintext`` is to be shown once, then dropped.

    ``created`` is True when the workspace itself was created (first start), False when only a
    preset key was added to an existing workspace. The plaintext is excluded from ``repr``.
    """

    workspace: Workspace
    access_key_plaintext: str = field(repr=False)
    created: bool = True

    @property
    def token_prefix(self) -> str:
        """The key's displayable prefix, safe to log."""
        return token_prefix(self.access_key_plaintext)


def validate_preset_key(preset_key: str) -> str:
    """Return ``preset_key`` if it looks like an access key, else raise :class:`ValueError`.

    The message never repeats the value: it is a secret even when malformed.
    """
    if not PRESET_KEY_PATTERN.fullmatch(preset_key):
        raise ValueError(
            "the preset access key must be 'vb_' followed by 20 to 256 characters from "
            '[A-Za-z0-9_-] (generate one with: python -c "import secrets, string; '
            "print('vb_' + ''.join(secrets.choice(string.ascii_letters + string.digits) "
            'for _ in range(32)))")'
        )
    return preset_key


async def bootstrap(store: Store, preset_key: str | None) -> BootstrapResult | None:
    """Make sure a fresh installation can be used, idempotently.

    * No workspace yet: create workspace ``"default"`` and an access key — ``preset_key`` when
      given, else a random one — and return ``BootstrapResult(..., created=True)`` so the caller
      prints the key once.
    * A workspace exists and ``preset_key`` is given but unknown: add it to the first
      workspace (automation re-running with a new key) and return a result with
      ``created=False``.
    * Otherwise (no preset, or the preset is already known — even if since deleted or expired,
      which is an operator decision bootstrap must not undo): ``None``.

    An invalid ``preset_key`` raises :class:`ValueError` before anything is written.
    Concurrent first starts against one database are not coordinated; run one process first.
    """
    if preset_key is not None:
        validate_preset_key(preset_key)
    workspace = await store.workspaces.first()
    if workspace is None:
        workspace = await store.workspaces.create(DEFAULT_WORKSPACE_NAME)
        key, plaintext = await store.access_keys.create(
            workspace.id,
            name="bootstrap",
            detail="created on first start",
            token=preset_key,
        )
        log.info(
            "bootstrap: created workspace %s and access key %s…", workspace.id, key.token_prefix
        )
        return BootstrapResult(workspace, plaintext, created=True)
    if preset_key is None:
        return None
    if await store.access_keys.find_by_token(preset_key, include_inactive=True) is not None:
        return None
    key, plaintext = await store.access_keys.create(
        workspace.id, name="preset", detail="added from the preset access key", token=preset_key
    )
    log.info(
        "bootstrap: added preset access key %s… to workspace %s", key.token_prefix, workspace.id
    )
    return BootstrapResult(workspace, plaintext, created=False)
