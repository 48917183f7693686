"""callbridge.store: persistence on SQLite (default) or PostgreSQL via SQLAlchemy async.

Open with :meth:`Store.open`; the repositories hang off the store (``store.calls`` …).
"""

from callbridge.store.errors import DuplicateError, NotFoundError, StoreBusyError, StoreError
from callbridge.store.repos import (
    AccessKeyRepository,
    ActiveflowRepository,
    CallRepository,
    WorkspaceRepository,
)
from callbridge.store.store import Store

__all__ = [
    "AccessKeyRepository",
    "ActiveflowRepository",
    "CallRepository",
    "DuplicateError",
    "NotFoundError",
    "Store",
    "StoreBusyError",
    "StoreError",
    "WorkspaceRepository",
]
