"""Units of the recordings package: the model's rules, the graph taps the recorder relies on,
and the stereo interleaving."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from callbridge.calls.model import IllegalTransition
from callbridge.legs.graph import MediaGraph
from callbridge.media.constants import FRAME_BYTES, SILENCE_FRAME
from callbridge.recordings.model import (
    RecordingStatus,
    check_recording_transition,
    check_tags,
    relative_filename,
    tags_from_list,
)
from callbridge.recordings.recorder import interleave
from callbridge.rtvbp.app_events import iso_ms, tm_transcript


def test_tags_from_rtvbp_lists() -> None:
    assert tags_from_list(["customer=ada", "vip", "k=v=w", "empty="]) == {
        "customer": "ada",
        "vip": "",
        "k": "v=w",
        "empty": "",
    }
    with pytest.raises(ValueError, match="empty key"):
        tags_from_list(["=x"])
    with pytest.raises(ValueError, match="at most 64"):
        tags_from_list([f"t{i}" for i in range(65)])
    with pytest.raises(ValueError, match="256"):
        check_tags({"k": "x" * 257})
    with pytest.raises(ValueError, match="strings"):
        check_tags({"k": 1})


def test_status_only_moves_forward_and_files_live_under_the_workspace() -> None:
    check_recording_transition(RecordingStatus.RECORDING, RecordingStatus.ENDED)
    with pytest.raises(IllegalTransition):
        check_recording_transition(RecordingStatus.ENDED, RecordingStatus.RECORDING)
    wid, rid = uuid.uuid4(), uuid.uuid4()
    assert relative_filename(wid, rid) == f"recordings/{wid}/{rid}.wav"


def test_interleave_puts_left_then_right() -> None:
    left = np.array([1, 2, 3], dtype="<i2").tobytes()
    right = np.array([-1, -2, -3], dtype="<i2").tobytes()
    assert np.frombuffer(interleave(left, right), dtype="<i2").tolist() == [1, -1, 2, -2, 3, -3]


async def test_taps_see_every_frame_and_a_faulty_tap_is_removed() -> None:
    graph = MediaGraph()
    out_seen: list[bytes] = []
    in_seen: list[bytes] = []
    remove_out = graph.add_outbound_tap(out_seen.append)
    graph.add_inbound_tap(in_seen.append)

    def broken(frame: bytes) -> None:
        raise RuntimeError("boom")

    graph.add_outbound_tap(broken)
    tone = bytes(range(256)) + bytes(FRAME_BYTES - 256)
    graph.producer("p").enqueue(tone)
    assert graph.next_outbound_frame() == tone  # the broken tap does not stop the audio
    assert graph.next_outbound_frame() == SILENCE_FRAME
    assert out_seen == [tone, SILENCE_FRAME]
    graph.on_leg_audio(tone)
    assert in_seen == [tone]
    remove_out()
    graph.next_outbound_frame()
    assert len(out_seen) == 2


def test_transcript_time_encodings() -> None:
    assert tm_transcript(5120) == "0001-01-01T00:00:05.120000Z"
    assert tm_transcript(0) == "0001-01-01T00:00:00.000000Z"
    from datetime import UTC, datetime

    assert iso_ms(datetime(2026, 2, 21, 10, 5, 2, 233415, tzinfo=UTC)) == "2026-02-21T10:05:02.233Z"
