"""Process logging: structlog in front, stdlib ``logging`` underneath, one format for both.

* :func:`configure_logging` picks ``console`` (human, one line per event) or ``json`` (one JSON
  object per line) output on stderr, with an ISO-8601 UTC ``timestamp``, ``level`` and
  ``logger`` on every line. Records of stdlib loggers (uvicorn's among them) go through the same
  processors, so they are formatted, context-enriched and redacted identically.
* Context: values bound with :func:`bind_context` / :func:`log_context` (for example
  ``call_id``) live in a context variable and appear on every line logged from that task and
  the tasks it starts.
* Redaction runs last before rendering, on every line: values of keys named like credentials
  (token, password, secret, authorization, access key, cookie) are replaced, and inside every
  string (including the message and formatted tracebacks) access keys ``vb_…``, ``Bearer``
  credentials and credential query parameters are replaced. Secrets therefore never reach a
  log, whichever logger wrote them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
_HANDLER_NAME = "callbridge"

_SECRET_KEY = re.compile(
    r"token|passw(or)?d|secret|authorization|access_?key|accesskey|api_?key|cookie",
    re.IGNORECASE,
)
_SECRET_TEXT = [
    (re.compile(r"vb_[A-Za-z0-9]{20,}"), "vb_" + REDACTED),
    (re.compile(r"(Bearer\s+)[^\s\"',;]+", re.IGNORECASE), r"\1" + REDACTED),
    (
        re.compile(r"([?&;](?:token|access_?key|password|secret)=)[^&\s\"';]*", re.IGNORECASE),
        r"\1" + REDACTED,
    ),
]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redact_text(text: str) -> str:
    """``text`` with access keys, Bearer credentials and credential query parameters replaced."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace credentials anywhere in the event (see module docstring)."""
    for key in list(event_dict):
        if key.startswith("_"):
            continue  # structlog/stdlib bookkeeping (the LogRecord), never rendered
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become text before redaction so a secret in an exception message is
        # redacted too.
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


def configure_logging(
    format: Literal["console", "json"] = "console",
    level: str = "info",
) -> None:
    """Route structlog and stdlib logging to stderr in ``format`` at ``level`` and above.

    Idempotent: calling it again replaces the handler an earlier call installed. Handlers others
    put on the root logger are left alone (the server process installs none).
    """
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    renderer: Processor
    if format == "json":
        renderer = structlog.processors.JSONRenderer()
    elif format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        raise ValueError(f"unknown log format {format!r}")

    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)

    handler.set_name(_HANDLER_NAME)

    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # uvicorn's loggers must not carry handlers of their own: everything goes to the root.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
        uv.setLevel(logging.NOTSET)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger named ``name`` (usually the module's ``__name__``)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_context(**values: Any) -> None:
    """Add ``values`` (e.g. ``call_id=…``) to every following line of this task and its children."""
    structlog.contextvars.bind_contextvars(**values)


def unbind_context(*keys: str) -> None:
    """Remove ``keys`` from the logging context of this task."""
    structlog.contextvars.unbind_contextvars(*keys)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind ``values`` for the duration of a ``with`` block, restoring the previous context."""
    with structlog.contextvars.bound_contextvars(**values):
        yield
