"""Topics, prefix matching and the event wire format."""

from __future__ import annotations

import json
import uuid

import pytest

from callbridge.bus import Event, make_topic, topic_matches, validate_topic
from callbridge.bus.base import topic_prefixes, validate_prefix


@pytest.mark.parametrize(
    ("prefix", "topic", "expected"),
    [
        ("", "ws.a.call.x.call_created", True),
        ("ws", "ws.a.call.x.call_created", True),
        ("ws.a", "ws.a.call.x.call_created", True),
        ("ws.a", "ws.a", True),
        ("ws.a", "ws.ab.call.x", False),
        ("ws.a", "ws", False),
        ("ws.a.call", "ws.a.calls.x", False),
        ("ws.a.call.x.call_created", "ws.a.call.x.call_created", True),
        ("ws.a.call.x.call_created", "ws.a.call.x.call_created_v2", False),
        ("w", "ws.a", False),
    ],
)
def test_topic_matches_on_token_boundaries(prefix: str, topic: str, expected: bool) -> None:
    assert topic_matches(prefix, topic) is expected
    # The prefix index used by the bus agrees with the predicate.
    assert (prefix in topic_prefixes(topic)) is expected


def test_topic_prefixes() -> None:
    assert topic_prefixes("a.b.c") == ["", "a", "a.b", "a.b.c"]
    assert topic_prefixes("a") == ["", "a"]


@pytest.mark.parametrize(
    "topic", ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "a/b", "é", "a" * 256, 5]
)
def test_invalid_topics(topic: object) -> None:
    with pytest.raises(ValueError):
        validate_topic(topic)  # type: ignore[arg-type]


@pytest.mark.parametrize("topic", ["a", "ws.A-b_9.call", "x" * 255])
def test_valid_topics(topic: str) -> None:
    assert validate_topic(topic) == topic


def test_empty_prefix_is_valid_but_not_as_topic() -> None:
    assert validate_prefix("") == ""
    with pytest.raises(ValueError):
        validate_topic("")


def test_make_topic() -> None:
    wid, cid = uuid.uuid4(), uuid.uuid4()
    topic = make_topic(wid, "call", cid, "call_progressing")
    assert topic == f"ws.{wid}.call.{cid}.call_progressing"
    assert validate_topic(topic) == topic
    assert topic_matches(f"ws.{wid}", topic)
    assert topic_matches(f"ws.{wid}.call.{cid}", topic)
    with pytest.raises(ValueError, match="resource"):
        make_topic(wid, "call.x", cid, "t")
    with pytest.raises(ValueError, match="event type"):
        make_topic(wid, "call", cid, "*")
    with pytest.raises(ValueError, match="workspace id"):
        make_topic("", "call", cid, "t")


def test_event_bytes_round_trip() -> None:
    event = Event(
        id=str(uuid.uuid4()),
        type="call_hangup",
        topic="ws.a.call.b.call_hangup",
        workspace_id="a",
        ts=1760000000.123456,
        data={"status": "hangup", "n": [1, 2.5, None, True], "ü": "☎"},
    )
    payload = event.to_bytes()
    assert b" " not in payload  # compact
    assert json.loads(payload)["data"]["ü"] == "☎"
    assert Event.from_bytes(payload) == event


def test_event_rejects_non_json_data_and_bad_payloads() -> None:
    event = Event(id="1", type="t", topic="a", workspace_id="w", ts=1.0, data={"x": object()})
    with pytest.raises(ValueError, match="JSON"):
        event.to_bytes()
    with pytest.raises(ValueError, match="JSON"):
        Event(
            id="1", type="t", topic="a", workspace_id="w", ts=1.0, data={"x": float("nan")}
        ).to_bytes()
    for bad in (
        b"not json",
        b"[]",
        b'{"id":"1"}',
        b"\xff",
        b'{"id":1,"type":"t","topic":"a","workspace_id":"w","ts":1,"data":{}}',
        b'{"id":"1","type":"t","topic":"a","workspace_id":"w","ts":true,"data":{}}',
        b'{"id":"1","type":"t","topic":"a","workspace_id":"w","ts":1,"data":[]}',
    ):
        with pytest.raises(ValueError):
            Event.from_bytes(bad)
