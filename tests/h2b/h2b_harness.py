"""Test helpers for the pure H2B engine: a client that numbers its commands like the SDK."""

from __future__ import annotations

import json
from typing import Any

from callbridge.h2b.engine import (
    H2BEngine,
    Output,
    PushAudio,
    Send,
    SessionEnded,
    StartRecognizer,
    StopRecognizer,
)
from callbridge.speech.asr.base import (
    Alternative,
    Final,
    NoMatch,
    RecognitionError,
    RecognitionEvent,
    SpeechEnded,
    SpeechStarted,
)

EPOCH_MS = 1_700_000_000_000
SUFFIX = "abcdef0123456"
EVENT_KEYS = [
    "event",
    "request_id",
    "channel_id",
    "headers",
    "completion_cause",
    "completion_reason",
    "body",
]


class Client:
    """Drives an :class:`H2BEngine` with JSON commands and collects what it outputs."""

    def __init__(self, engine: H2BEngine | None = None, **kwargs: Any) -> None:
        self.engine = engine or H2BEngine(
            epoch_ms=lambda: EPOCH_MS, channel_suffix=lambda: SUFFIX, **kwargs
        )
        self.request_id = 0
        self.channel = ""
        self.outputs: list[Output] = []
        self.pushed_frames = 0
        self.started: list[StartRecognizer] = []
        self.stopped: list[int] = []
        self.records: list[SessionEnded] = []

    def _collect(self, outputs: list[Output]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for item in outputs:
            self.outputs.append(item)
            if isinstance(item, Send):
                data = json.loads(item.event.to_json())
                assert list(data) == EVENT_KEYS
                assert isinstance(data["request_id"], int)
                if data["event"] == "OPENED":
                    self.channel = data["channel_id"]
                events.append(data)
            elif isinstance(item, PushAudio):
                self.pushed_frames += len(item.frames)
            elif isinstance(item, StartRecognizer):
                self.started.append(item)
            elif isinstance(item, StopRecognizer):
                self.stopped.append(item.rec_id)
            elif isinstance(item, SessionEnded):
                self.records.append(item)
        return events

    def raw(self, text: str | bytes) -> list[dict[str, Any]]:
        return self._collect(self.engine.handle_text(text))

    def cmd(
        self,
        name: str,
        headers: dict[str, Any] | None = None,
        body: str = "",
        channel: str | None = None,
    ) -> list[dict[str, Any]]:
        self.request_id += 1
        frame = {
            "command": name,
            "request_id": self.request_id,
            "channel_id": self.channel if channel is None else channel,
            "headers": headers or {},
            "body": body,
        }
        return self.raw(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    def open(self, **headers: Any) -> dict[str, Any]:
        h = {"custom_id": "", "audio_codec": "linear", "session_id": ""}
        h.update(headers)
        (event,) = self.cmd("OPEN", h, channel="")
        assert event["event"] == "OPENED", event
        return event

    def recognize(self, *uris: str, **params: Any) -> list[dict[str, Any]]:
        headers: dict[str, Any] = {
            "recognition_mode": params.pop("recognition_mode", "normal"),
            "content_type": "text/uri-list",
            "start_input_timers": params.pop("start_input_timers", True),
        }
        headers.update(params)
        return self.cmd("RECOGNIZE", headers, "\n".join(uris))

    def audio(self, data: bytes) -> list[dict[str, Any]]:
        return self._collect(self.engine.handle_audio(data))

    def silence_ms(self, ms: int) -> list[dict[str, Any]]:
        return self.audio(bytes(ms * 16))

    def silence_samples(self, samples: int) -> list[dict[str, Any]]:
        return self.audio(bytes(samples * 2))

    def rec(self, event: RecognitionEvent, rec_id: int | None = None) -> list[dict[str, Any]]:
        rid = rec_id if rec_id is not None else self.engine.active_recognizer
        assert rid is not None
        return self._collect(self.engine.handle_recognizer(rid, event))

    # Speech as the recognizer reports it, times relative to the recognizer stream.
    def utterance(
        self,
        start_ms: int,
        end_ms: int,
        transcript: str,
        confidence: float = 0.9,
        nbest: tuple[tuple[str, float], ...] = (),
    ) -> list[dict[str, Any]]:
        events = self.rec(SpeechStarted(start_ms))
        events += self.rec(SpeechEnded(end_ms))
        alts = tuple(Alternative(t, c) for t, c in nbest) or (Alternative(transcript, confidence),)
        events += self.rec(Final(transcript, confidence, start_ms, end_ms, nbest=alts))
        return events

    def nomatch(self, start_ms: int, end_ms: int, transcript: str = "") -> list[dict[str, Any]]:
        events = self.rec(SpeechStarted(start_ms))
        events += self.rec(SpeechEnded(end_ms))
        events += self.rec(NoMatch("rejected", start_ms, end_ms, transcript))
        return events

    def error(self, message: str) -> list[dict[str, Any]]:
        return self.rec(RecognitionError(message, 0, 0))

    def rec_started(self, at_ms: int) -> list[dict[str, Any]]:
        return self.rec(SpeechStarted(at_ms))

    def rec_ended(self, at_ms: int) -> list[dict[str, Any]]:
        return self.rec(SpeechEnded(at_ms))

    def rec_final(
        self, transcript: str, start_ms: int, end_ms: int, confidence: float = 0.9
    ) -> list[dict[str, Any]]:
        return self.rec(Final(transcript, confidence, start_ms, end_ms))


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]
