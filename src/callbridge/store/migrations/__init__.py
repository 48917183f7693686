"""Alembic environment of the store, applied programmatically by ``Store.open``."""
