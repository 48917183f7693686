"""Seeded fuzzing of the command parser and the engine: nothing raises, every reply is valid.

(hypothesis is not installed; these are deterministic random mutations of the SDK's vectors.)
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from h2b_harness import EVENT_KEYS, Client

from callbridge.h2b.engine import Send
from callbridge.h2b.protocol import CompletionCause, EventName, H2BEvent, parse_command
from callbridge.speech.asr.base import Final, NoMatch, SpeechEnded, SpeechStarted

VECTORS = [
    '{"command":"OPEN","request_id":1,"channel_id":"mychan","headers":{"custom_id":"mycustomer",'
    '"audio_codec":"linear","session_id":""},"body":""}',
    '{"command":"DEFINE-GRAMMAR","request_id":1,"channel_id":"testuie46e4ui6","headers":'
    '{"content_id":"parcel_num","content_type":"text/uri-list"},'
    '"body":"builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{9}[a-z]{2}"}',
    '{"command":"RECOGNIZE","request_id":2,"channel_id":"testuie46e4ui6","headers":'
    '{"recognition_mode":"normal","content_type":"text/uri-list","start_input_timers":true,'
    '"no_input_timeout":5000},"body":"session:parcel_num"}',
    '{"command":"SET-PARAMS","request_id":3,"channel_id":"","headers":{"speech_language":"fr",'
    '"confidence_threshold":"0.4","n_best_list_length":3},"body":""}',
]
JUNK_VALUES: list[Any] = [
    None,
    True,
    -1,
    2**70,
    1.5,
    float("nan"),
    "",
    "x" * 300,
    [],
    {},
    {"a": [1, {"b": None}]},
    "arrêt",
    "\u0000",
    "1e999",
]
COMMANDS = [
    "OPEN",
    "SET-PARAMS",
    "GET-PARAMS",
    "DEFINE-GRAMMAR",
    "RECOGNIZE",
    "START-INPUT-TIMERS",
    "STOP",
    "CLOSE",
]
HEADER_KEYS = [
    "audio_codec",
    "custom_id",
    "content_id",
    "content_type",
    "recognition_mode",
    "no_input_timeout",
    "speech_language",
    "n_best_list_length",
    "confidence_threshold",
    "hotword-max-time",
    "start_input_timers",
]


def _check(event: H2BEvent) -> None:
    data = json.loads(event.to_json())
    assert list(data) == EVENT_KEYS
    assert data["event"] in {e.value for e in EventName}
    assert type(data["request_id"]) is int
    assert isinstance(data["channel_id"], str) and isinstance(data["headers"], dict)
    cause = data["completion_cause"]
    assert cause is None or cause in {c.value for c in CompletionCause}
    assert data["body"] == "" or isinstance(data["body"], dict)
    if data["body"]:
        assert {"asr", "nlu", "grammar_uri"} <= set(data["body"])


def _mutate_text(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(4)
        pos = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 1:
            chars.insert(pos, rng.choice('{}[]":,\\0aZé\x00 '))
        elif op == 2 and chars:
            chars[min(pos, len(chars) - 1)] = chr(rng.randrange(0x20, 0x250))
        else:
            chars = chars[:pos]
    return "".join(chars)


def _mutate_json(rng: random.Random, text: str) -> str:
    data: dict[str, Any] = json.loads(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0:
            data[rng.choice([*data, "extra"])] = copy.deepcopy(rng.choice(JUNK_VALUES))
        elif op == 1 and data:
            del data[rng.choice(list(data))]
        elif op == 2:
            data["command"] = rng.choice([*COMMANDS, "open", "BOGUS", ""])
        elif op == 3:
            headers = data.get("headers")
            if isinstance(headers, dict):
                headers[rng.choice(HEADER_KEYS)] = copy.deepcopy(rng.choice(JUNK_VALUES))
        else:
            data["body"] = rng.choice(
                [
                    "",
                    "builtin:speech/boolean",
                    "session:x\nbuiltin:speech/keywords?alternatives=a\\|b|c",
                    "builtin:speech/spelling/digits?length=%41",
                    "nonsense",
                    5,
                ]
            )
    return json.dumps(data, ensure_ascii=False)


def test_parser_never_raises() -> None:
    rng = random.Random(6)
    for i in range(4000):
        base = rng.choice(VECTORS)
        text = _mutate_text(rng, base) if i % 2 else _mutate_json(rng, base)
        result = parse_command(text)
        if isinstance(result, H2BEvent):
            assert result.event is EventName.METHOD_NOT_VALID
            _check(result)


def test_engine_never_raises_and_always_answers() -> None:
    rng = random.Random(1234)
    for _round in range(40):
        client = Client()
        for _ in range(150):
            op = rng.randrange(10)
            if op < 5:
                base = rng.choice(VECTORS)
                text = _mutate_json(rng, base) if rng.random() < 0.7 else _mutate_text(rng, base)
                if rng.random() < 0.5:  # reach deeper states with the real channel id
                    text = text.replace("testuie46e4ui6", client.engine.channel_id)
                out = client.engine.handle_text(text)
                sends = [o for o in out if isinstance(o, Send)]
                assert sends, text
            elif op < 8:
                out = client.engine.handle_audio(rng.randbytes(rng.randrange(0, 2000)))
            else:
                rid = client.engine.active_recognizer
                if rid is None:
                    continue
                t = rng.randrange(0, 5000)
                ev = rng.choice(
                    [
                        SpeechStarted(t),
                        SpeechEnded(t),
                        Final(rng.choice(["yes", "no", "one two", "", "le mans"]), 0.8, t, t + 200),
                        NoMatch("rejected", t, t + 100, "blah"),
                    ]
                )
                out = client.engine.handle_recognizer(rid, ev)
            for item in out:
                if isinstance(item, Send):
                    _check(item.event)


def test_events_parse_with_the_sdk() -> None:
    import pytest

    events_mod = pytest.importorskip("uhlive.stream.recognition.events")
    rng = random.Random(99)
    client = Client()
    for _ in range(3000):
        base = rng.choice(VECTORS)
        for item in client.engine.handle_text(_mutate_json(rng, base)):
            if isinstance(item, Send):
                events_mod.deserialize(item.event.to_json())
        for item in client.engine.handle_audio(bytes(rng.randrange(0, 4000))):
            if isinstance(item, Send):
                events_mod.deserialize(item.event.to_json())
