"""The session engine: every command, every misuse, state table, multi-session, audio rules."""

from __future__ import annotations

import json

import pytest
from h2b_harness import SUFFIX, Client, names

from callbridge.h2b.engine import (
    LEGAL_COMMANDS,
    TRANSITIONS,
    H2BEngine,
    IllegalTransition,
    SessionState,
)
from callbridge.h2b.protocol import CommandName
from callbridge.media.g711 import alaw_encode, ulaw_encode
from callbridge.speech.asr.base import SpeechStarted

BOOL = "builtin:speech/boolean"


def test_open_uses_prefix_and_thirteen_hex_digits() -> None:
    c = Client()
    events = c.raw(
        '{"command":"OPEN","request_id":1,"channel_id":"mychan","headers":'
        '{"custom_id":"mycustomer","audio_codec":"linear","session_id":""},"body":""}'
    )
    (opened,) = events
    assert opened == {
        "event": "OPENED",
        "request_id": 1,
        "channel_id": "mychan" + SUFFIX,
        "headers": {},
        "completion_cause": None,
        "completion_reason": None,
        "body": "",
    }
    assert c.engine.state is SessionState.IDLE


def test_default_suffix_is_13_lower_hex() -> None:
    engine = H2BEngine(epoch_ms=lambda: 0)
    c = Client(engine)
    opened = c.open()
    assert len(opened["channel_id"]) == 13
    assert all(ch in "0123456789abcdef" for ch in opened["channel_id"])


@pytest.mark.parametrize(
    ("codec", "ok"),
    [
        ("linear", True),
        ("g711a", True),
        ("g711u", True),
        ("alaw", True),
        ("ULAW", True),
        ("mulaw", True),
        ("", True),
        ("opus", False),
        (3, False),
    ],
)
def test_open_codecs(codec: object, ok: bool) -> None:
    c = Client()
    (event,) = c.cmd("OPEN", {"custom_id": "", "audio_codec": codec, "session_id": ""})
    if ok:
        assert event["event"] == "OPENED"
    else:
        assert event["event"] == "INVALID-PARAM-VALUE"
        assert event["completion_reason"].startswith("audio_codec:")
        assert c.engine.state is SessionState.NO_SESSION


@pytest.mark.parametrize(
    ("headers", "channel"),
    [
        ({"custom_id": ["x"]}, ""),
        ({"session_id": "x" * 200}, ""),
        ({}, "bad prefix"),
        ({}, "x" * 65),
    ],
)
def test_open_bad_ids(headers: dict[str, object], channel: str) -> None:
    c = Client()
    (event,) = c.cmd("OPEN", headers, channel=channel)
    assert event["event"] == "INVALID-PARAM-VALUE"


def test_open_accepts_numeric_custom_id_and_nulls() -> None:
    c = Client()
    (event,) = c.cmd("OPEN", {"custom_id": 42, "session_id": None, "audio_codec": None})
    assert event["event"] == "OPENED"


def _client_in(state: SessionState) -> Client:
    c = Client()
    if state is SessionState.NO_SESSION:
        return c
    c.open()
    if state is SessionState.RECOGNITION:
        (ev,) = c.recognize(BOOL)
        assert ev["event"] == "RECOGNITION-IN-PROGRESS"
    return c


@pytest.mark.parametrize("state", list(SessionState))
@pytest.mark.parametrize("command", list(CommandName))
def test_state_table(state: SessionState, command: CommandName) -> None:
    c = _client_in(state)
    events = c.cmd(str(command), {}, "")
    assert len(events) == 1
    (event,) = events
    if command in LEGAL_COMMANDS[state]:
        assert event["event"] != "METHOD-NOT-ALLOWED"
    else:
        assert event["event"] == "METHOD-NOT-ALLOWED"
        assert event["completion_reason"] == f"{command} not allowed in {state.value}"
        assert c.engine.state is state


def test_illegal_transition_raises() -> None:
    engine = H2BEngine(epoch_ms=lambda: 0)
    assert (SessionState.NO_SESSION, SessionState.RECOGNITION) not in TRANSITIONS
    with pytest.raises(IllegalTransition):
        engine._set_state(SessionState.RECOGNITION)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1,2]",
        '{"request_id":1}',
        '{"command":"FOO","request_id":1}',
        '{"command":"OPEN","request_id":"x"}',
        '{"command":"OPEN","request_id":true}',
        '{"command":"OPEN","request_id":-1}',
        '{"command":"OPEN","request_id":1,"channel_id":5}',
        '{"command":"OPEN","request_id":1,"headers":[]}',
        '{"command":"OPEN","request_id":1,"body":{}}',
        b"\xff\xfe",
    ],
)
def test_malformed_commands_get_method_not_valid(frame: str | bytes) -> None:
    c = Client()
    (event,) = c.raw(frame)
    assert event["event"] == "METHOD-NOT-VALID"
    assert event["completion_reason"]


def test_request_id_coercion_and_unknown_command_keeps_id() -> None:
    c = Client()
    (event,) = c.raw('{"command":"OPEN","request_id":"7","channel_id":"","headers":{},"body":""}')
    assert event["event"] == "OPENED" and event["request_id"] == 7
    (event,) = c.raw('{"command":"DANCE","request_id":8}')
    assert event == {**event, "event": "METHOD-NOT-VALID", "request_id": 8}
    assert event["channel_id"] == c.channel
    (event,) = c.raw("{oops")
    assert event["request_id"] == 0


def test_wrong_channel_id_is_method_not_valid() -> None:
    c = Client()
    c.open()
    (event,) = c.cmd("GET-PARAMS", channel="other")
    assert event["event"] == "METHOD-NOT-VALID"
    (event,) = c.cmd("GET-PARAMS", channel="")
    assert event["event"] == "DEFAULT-PARAMS"


def test_set_and_get_params() -> None:
    c = Client()
    c.open()
    (event,) = c.cmd("GET-PARAMS")
    assert event["headers"] == {
        "speech_language": "en",
        "recognition_mode": "normal",
        "start_input_timers": True,
        "no_input_timeout": 5000,
        "recognition_timeout": 20000,
        "speech_complete_timeout": 800,
        "speech_incomplete_timeout": 1500,
        "speech_nomatch_timeout": 3000,
        "hotword_max_duration": 10000,
        "confidence_threshold": 0.5,
        "n_best_list_length": 1,
        "logging_tag": "",
    }
    (event,) = c.cmd(
        "SET-PARAMS",
        {
            "speech_language": "en-US",
            "no-input-timeout": "7000",
            "hotword_max_time": 4000,
            "confidence_threshold": "0.4",
            "start_input_timers": "false",
            "n_best_list_length": 3.0,
            "logging_tag": "t1",
            "bogus": 1,
        },
    )
    assert event["event"] == "PARAMS-SET"
    (event,) = c.cmd("GET-PARAMS")
    h = event["headers"]
    assert h["no_input_timeout"] == 7000 and h["hotword_max_duration"] == 4000
    assert h["confidence_threshold"] == 0.4 and h["start_input_timers"] is False
    assert h["n_best_list_length"] == 3 and h["speech_language"] == "en-US"
    assert "bogus" not in h


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("no_input_timeout", -1),
        ("no_input_timeout", "abc"),
        ("no_input_timeout", 1.5),
        ("no_input_timeout", True),
        ("recognition_timeout", float("inf")),
        ("confidence_threshold", 1.5),
        ("n_best_list_length", 0),
        ("n_best_list_length", 11),
        ("recognition_mode", "sometimes"),
        ("speech_language", "not a language"),
        ("speech_language", 12),
        ("start_input_timers", "maybe"),
        ("logging_tag", "x" * 300),
        ("content_type", "text/plain"),
    ],
)
def test_invalid_param_values(key: str, value: object) -> None:
    c = Client()
    c.open()
    frame = json.dumps(
        {
            "command": "SET-PARAMS",
            "request_id": 2,
            "channel_id": c.channel,
            "headers": {"no_input_timeout": 100, key: value},
            "body": "",
        }
    ).replace("Infinity", "1e999")
    (event,) = c.raw(frame)
    assert event["event"] == "INVALID-PARAM-VALUE"
    assert event["completion_reason"].startswith(key + ":")
    (event,) = c.cmd("GET-PARAMS")
    assert event["headers"]["no_input_timeout"] == 5000  # nothing applied
    (event,) = c.recognize(BOOL, **{key: value})
    assert event["event"] == "INVALID-PARAM-VALUE"
    assert c.engine.state is SessionState.IDLE


def test_define_grammar_and_use_alias() -> None:
    c = Client()
    c.open()
    (event,) = c.cmd(
        "DEFINE-GRAMMAR",
        {"content_id": "parcel_num", "content_type": "text/uri-list"},
        "builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{9}[a-z]{2}",
    )
    assert (event["event"], event["completion_cause"], event["completion_reason"]) == (
        "GRAMMAR-DEFINED",
        "Success",
        "success",
    )
    (event,) = c.recognize("session:parcel_num", no_input_timeout=5000)
    assert (event["event"], event["completion_cause"]) == ("RECOGNITION-IN-PROGRESS", "Success")


@pytest.mark.parametrize(
    ("headers", "body", "event", "cause"),
    [
        ({"content_type": "text/uri-list"}, "builtin:speech/boolean", "MISSING-PARAM", None),
        ({"content_id": "a"}, "", "MISSING-PARAM", None),
        ({"content_id": 5}, "builtin:speech/boolean", "INVALID-PARAM-VALUE", None),
        (
            {"content_id": "a", "content_type": "x"},
            "builtin:speech/boolean",
            "INVALID-PARAM-VALUE",
            None,
        ),
        ({"content_id": "a"}, "builtin:speech/nothing", "METHOD-FAILED", "GramDefinitionFailure"),
        ({"content_id": "a"}, "session:b", "METHOD-FAILED", "GramDefinitionFailure"),
        (
            {"content_id": "a"},
            "builtin:speech/boolean?x=1",
            "METHOD-FAILED",
            "GramDefinitionFailure",
        ),
    ],
)
def test_define_grammar_errors(
    headers: dict[str, object], body: str, event: str, cause: str | None
) -> None:
    c = Client()
    c.open()
    (ev,) = c.cmd("DEFINE-GRAMMAR", headers, body)
    assert (ev["event"], ev["completion_cause"]) == (event, cause)


def test_alias_limit() -> None:
    c = Client()
    c.open()
    for i in range(128):
        (ev,) = c.cmd("DEFINE-GRAMMAR", {"content_id": f"g{i}"}, BOOL)
        assert ev["event"] == "GRAMMAR-DEFINED"
    (ev,) = c.cmd("DEFINE-GRAMMAR", {"content_id": "g0"}, BOOL)  # redefinition is fine
    assert ev["event"] == "GRAMMAR-DEFINED"
    (ev,) = c.cmd("DEFINE-GRAMMAR", {"content_id": "extra"}, BOOL)
    assert ev["completion_cause"] == "GramDefinitionFailure"


def test_recognize_errors() -> None:
    c = Client()
    c.open()
    (ev,) = c.recognize()
    assert (ev["event"], ev["completion_reason"]) == ("MISSING-PARAM", "body is required")
    (ev,) = c.recognize("session:toto")
    assert (ev["event"], ev["completion_cause"], ev["completion_reason"]) == (
        "METHOD-FAILED",
        "GramLoadFailure",
        "unknown grammar 'session:toto'",
    )
    (ev,) = c.recognize("builtin:speech/digits_of_pi")
    assert ev["completion_reason"] == "unknown grammar 'builtin:speech/digits_of_pi'"
    (ev,) = c.recognize("builtin:speech/spelling/digits?length=zero")
    assert ev["completion_cause"] == "GramLoadFailure"
    (ev,) = c.recognize(*[BOOL] * 17)
    assert ev["completion_cause"] == "GramLoadFailure"
    (ev,) = c.recognize(BOOL, speech_language="xx")
    assert (ev["event"], ev["completion_cause"], ev["completion_reason"]) == (
        "METHOD-FAILED",
        "LanguageUnsupported",
        "language 'xx' unsupported",
    )
    assert c.engine.state is SessionState.IDLE


def test_language_callback_refuses() -> None:
    c = Client(language_supported=lambda lang, grammars: lang.startswith("en"))
    c.open()
    (ev,) = c.recognize(BOOL, speech_language="fr")
    assert ev["completion_cause"] == "LanguageUnsupported"
    (ev,) = c.recognize(BOOL, speech_language="en-GB")
    assert ev["event"] == "RECOGNITION-IN-PROGRESS"


def test_stop_close_and_sessions_in_sequence() -> None:
    c = Client()
    c.open(custom_id="cust", session_id="sess")
    c.recognize(BOOL)
    rec1 = c.engine.active_recognizer
    (ev,) = c.cmd("STOP")
    assert ev["event"] == "STOPPED" and c.stopped == [rec1]
    assert c.engine.state is SessionState.IDLE
    # late recognizer events of the stopped session are ignored
    assert rec1 is not None and c.rec(SpeechStarted(0), rec1) == []
    (ev,) = c.cmd("STOP")
    assert ev["event"] == "METHOD-NOT-ALLOWED"
    c.recognize(BOOL)
    c.silence_ms(1000)
    (ev,) = c.cmd("CLOSE")
    assert ev["event"] == "CLOSED" and c.engine.state is SessionState.NO_SESSION
    assert ev["channel_id"] == "" or ev["channel_id"] == c.channel
    (record,) = c.records
    assert record.record.custom_id == "cust" and record.record.session_id == "sess"
    assert record.record.recognitions == 2 and record.record.recognized_ms == 1000
    # audio after CLOSE: dropped, no event
    assert c.silence_ms(500) == []
    # a second session on the same connection; request ids continue
    opened = c.open(audio_codec="g711u")
    assert opened["request_id"] == c.request_id
    (ev,) = c.cmd("CLOSE")
    assert ev["event"] == "CLOSED"


def test_closed_event_carries_the_session_channel() -> None:
    c = Client()
    c.open()
    (ev,) = c.cmd("CLOSE")
    assert ev["channel_id"] == c.channel


def test_close_during_recognition_cancels_silently() -> None:
    c = Client()
    c.open()
    c.recognize(BOOL)
    events = c.cmd("CLOSE")
    assert names(events) == ["CLOSED"]
    assert len(c.stopped) == 1 and len(c.records) == 1


def test_connection_lost() -> None:
    c = Client()
    assert c.engine.connection_lost() == []
    c.open()
    c.recognize(BOOL)
    out = c.engine.connection_lost()
    assert len(out) == 2 and c.engine.state is SessionState.NO_SESSION
    c2 = Client()
    c2.open()
    assert len(c2.engine.connection_lost()) == 1


def test_audio_outside_session_dropped_and_outside_recognition_not_pushed() -> None:
    c = Client()
    assert c.silence_ms(100) == []
    c.open()
    assert c.silence_ms(1000) == []
    assert c.pushed_frames == 0 and c.started == []
    c.recognize(BOOL)
    (start,) = c.started
    # the pre-roll is the last 300 ms, in 20 ms frames
    assert len(start.preroll) == 15 and all(len(f) == 320 for f in start.preroll)
    c.silence_ms(100)
    assert c.pushed_frames == 5


def test_preroll_keeps_the_newest_audio() -> None:
    c = Client()
    c.open()
    c.audio(b"\x01\x00" * 8000)  # 1 s of 1s
    c.audio(b"\x02\x00" * 80)  # 10 ms of 2s
    c.recognize(BOOL)
    (start,) = c.started
    pre = b"".join(start.preroll)
    assert len(pre) == 4800 and pre.endswith(b"\x02\x00" * 80) and pre.startswith(b"\x01\x00")


@pytest.mark.parametrize("chunk", [1, 3, 159, 160, 321, 4001])
def test_linear_any_chunk_size(chunk: int) -> None:
    c = Client()
    c.open()
    c.recognize(BOOL, no_input_timeout=100000)
    data = bytes(range(256)) * 25  # 6400 bytes = 200 ms
    for i in range(0, len(data), chunk):
        c.audio(data[i : i + chunk])
    frames = b"".join(
        f
        for o in c.outputs
        if hasattr(o, "frames")
        for f in o.frames  # type: ignore[attr-defined]
    )
    assert frames == data


@pytest.mark.parametrize(("codec", "encode"), [("g711a", alaw_encode), ("g711u", ulaw_encode)])
def test_g711_decoded(codec: str, encode: object) -> None:
    c = Client()
    c.open(audio_codec=codec)
    c.recognize(BOOL)
    pcm = b"".join(
        int(1000 * ((i % 40) - 20)).to_bytes(2, "little", signed=True) for i in range(800)
    )
    encoded = encode(pcm)  # type: ignore[operator]
    for i in range(0, len(encoded), 77):
        c.audio(encoded[i : i + 77])
    frames = b"".join(
        f
        for o in c.outputs
        if hasattr(o, "frames")
        for f in o.frames  # type: ignore[attr-defined]
    )
    assert len(frames) == 1600
    decoded = [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, 1600, 2)]
    original = [int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, 1600, 2)]
    assert all(abs(a - b) <= max(64, abs(b) // 8) for a, b in zip(decoded, original, strict=True))


def test_codec_switch_between_sessions() -> None:
    c = Client()
    c.open(audio_codec="g711a")
    c.cmd("CLOSE")
    c.open(audio_codec="linear")
    c.recognize(BOOL)
    c.audio(b"\x10\x00" * 160)
    frames = [f for o in c.outputs if hasattr(o, "frames") for f in o.frames]  # type: ignore[attr-defined]
    assert frames == [b"\x10\x00" * 160]
