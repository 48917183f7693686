"""Errors raised by the store. Messages are meant for operators and never contain secrets."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked: bad URL, unreachable database, failed migration…"""


class NotFoundError(StoreError):
    """An update addressed a row that does not exist (in that workspace)."""


class DuplicateError(StoreError):
    """An insert conflicts with an existing row on a unique identity (id, token)."""


class StoreBusyError(StoreError):
    """A write could not be done within its bound: this process's writer queue did not reach
    it in time, or another process held SQLite's write lock past the busy timeout.

    Nothing was written; the caller decides whether to retry, answer 503 or give up loudly.
    """
