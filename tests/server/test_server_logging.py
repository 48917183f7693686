"""Logging configuration: JSON/console lines, context binding, redaction, stdlib routing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from callbridge.observability.logging import (
    bind_context,
    configure_logging,
    get_logger,
    log_context,
    unbind_context,
)

SECRET_KEY = "vb_" + "k3y" * 10


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        structlog.configure(**config)
        structlog.contextvars.clear_contextvars()


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_with_context_and_redaction(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info")
    log = get_logger("callbridge.test")
    with log_context(call_id="call-1"):
        log.info("answered", token="abc", headers={"Authorization": "Bearer xyz", "Accept": "a"})
        logging.getLogger("uvicorn.access").info(
            '%s - "GET %s"', "127.0.0.1", f"/v1.0/calls?accesskey={SECRET_KEY}&page_size=1"
        )
        log.info(f"key is {SECRET_KEY}", password="hunter2", nested=[f"Bearer {SECRET_KEY}"])
        try:
            raise ValueError(f"bad {SECRET_KEY}")
        except ValueError:
            log.exception("failed")
    log.debug("hidden at info")
    log.info("after")
    err = capsys.readouterr().err
    assert SECRET_KEY not in err and "hunter2" not in err and "xyz" not in err
    records = json_lines(err)
    assert records[0]["event"] == "answered"
    assert len(records) == 5
    for record in records[:4]:
        assert record["call_id"] == "call-1"
        assert {"timestamp", "level", "logger"} <= record.keys()
    assert "call_id" not in records[4]
    first = records[0]
    assert first["token"] == "[REDACTED]"
    assert first["headers"] == {"Authorization": "[REDACTED]", "Accept": "a"}
    assert first["logger"] == "callbridge.test" and first["level"] == "info"
    assert str(first["timestamp"]).endswith("Z")
    access = records[1]
    assert access["logger"] == "uvicorn.access"
    assert access["event"] == '127.0.0.1 - "GET /v1.0/calls?accesskey=[REDACTED]&page_size=1"'
    assert "Traceback" in str(records[3]["exception"])


def test_console_format_and_bound_context(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("console", "debug")
    bind_context(call_id="c-9")
    get_logger("callbridge.calls").debug("ringing", secret=SECRET_KEY)
    unbind_context("call_id")
    logging.getLogger("somelib").warning("plain %s", "stdlib")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "ringing" in lines[0] and "call_id=c-9" in lines[0] and "[callbridge.calls]" in lines[0]
    assert SECRET_KEY not in lines[0]
    assert "plain stdlib" in lines[1] and "warning" in lines[1] and "call_id" not in lines[1]


def test_reconfigure_does_not_duplicate(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info")
    configure_logging("json", "info")
    get_logger("x").info("once")
    assert len(json_lines(capsys.readouterr().err)) == 1


def test_bad_arguments(restore_logging: None) -> None:
    with pytest.raises(ValueError):
        configure_logging("json", "chatty")
    with pytest.raises(ValueError):
        configure_logging("xml", "info")  # type: ignore[arg-type]
