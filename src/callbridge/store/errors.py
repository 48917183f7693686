"""Errors raised by the store. Messages are meant for operators and never contain secrets."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked: bad URL, unreachable database, failed migration…"""


class NotFoundError(StoreError):
    """An update addressed a row that does not exist (in that workspace)."""


class DuplicateError(StoreError):
    """An insert conflicts with an existing row on a unique identity (id, token)."""
