"""Recognition life cycle on the audio clock: exact sample counts, both modes, results."""

from __future__ import annotations

import pytest
from h2b_harness import EPOCH_MS, Client, names

from callbridge.h2b.engine import SessionState
from callbridge.speech.asr.base import Alternative, Final, SpeechEnded, SpeechStarted

BOOL = "builtin:speech/boolean"
DATE = "builtin:speech/date"
DIGITS = "builtin:speech/spelling/digits?length=3"


def _started(**params: object) -> Client:
    c = Client()
    c.open()
    (ev,) = c.recognize(*params.pop("uris", (BOOL,)), **params)  # type: ignore[arg-type]
    assert ev["event"] == "RECOGNITION-IN-PROGRESS", ev
    return c


def _complete(events: list[dict[str, object]]) -> dict[str, object]:
    (complete,) = [e for e in events if e["event"] == "RECOGNITION-COMPLETE"]
    return complete


def test_no_input_timeout_exact_samples() -> None:
    c = _started(no_input_timeout=1000)
    assert c.silence_samples(7999) == []
    (ev,) = c.silence_samples(1)
    assert ev["event"] == "RECOGNITION-COMPLETE" and ev["request_id"] == 2
    assert (ev["completion_cause"], ev["completion_reason"]) == ("NoInputTimeout", "no voice")
    assert ev["body"] == {
        "asr": None,
        "nlu": None,
        "grammar_uri": "",
        "version": ev["body"]["version"],  # type: ignore[index]
        "asr_model": "",
    }
    assert c.engine.state is SessionState.IDLE and len(c.stopped) == 1


def test_no_input_fires_inside_a_large_chunk() -> None:
    c = _started(no_input_timeout=1010)
    events = c.silence_ms(5000)
    assert names(events) == ["RECOGNITION-COMPLETE"]
    # exactly 1010 ms went to the recognizer (50.5 frames → 50 whole frames pushed)
    assert c.pushed_frames == 50
    assert c.records == [] and c.engine.state is SessionState.IDLE


def test_zero_no_input_timeout_fires_at_once() -> None:
    c = Client()
    c.open()
    events = c.recognize(BOOL, no_input_timeout=0)
    assert names(events) == ["RECOGNITION-IN-PROGRESS", "RECOGNITION-COMPLETE"]


def test_start_input_timers_false_waits_for_the_command() -> None:
    c = _started(no_input_timeout=500, start_input_timers=False)
    assert c.silence_ms(3000) == []
    (ev,) = c.cmd("START-INPUT-TIMERS")
    assert ev["event"] == "INPUT-TIMERS-STARTED"
    (ev,) = c.cmd("START-INPUT-TIMERS")  # already running: still acknowledged
    assert ev["event"] == "INPUT-TIMERS-STARTED"
    assert c.silence_samples(3999) == []
    assert names(c.silence_samples(1)) == ["RECOGNITION-COMPLETE"]


def test_speech_in_progress_when_timers_start_counts_as_onset() -> None:
    c = _started(no_input_timeout=500, start_input_timers=False)
    assert names(c.rec_started(100)) == ["START-OF-INPUT"]
    c.cmd("START-INPUT-TIMERS")
    assert c.silence_ms(2000) == []


def test_success_after_speech_complete_timeout_exact() -> None:
    c = _started(speech_complete_timeout=800)
    c.silence_ms(1500)
    # no audio before RECOGNIZE, so no pre-roll: recognizer time = session time
    events = c.utterance(900, 1400, "yes")
    assert names(events) == ["START-OF-INPUT"]
    assert events[0]["request_id"] == 2
    # silence starts at 1400 ms; complete due at 2200 ms; clock is at 1500 ms
    assert c.silence_samples(700 * 8 - 1) == []
    (ev,) = c.silence_samples(1)
    assert (ev["completion_cause"], ev["completion_reason"]) == ("Success", "success")
    body = ev["body"]
    assert body["asr"] == {  # type: ignore[index]
        "transcript": "yes",
        "confidence": 0.9,
        "start": EPOCH_MS + 900,
        "end": EPOCH_MS + 1400,
        "phones": "",
    }
    assert body["nlu"] == {"type": BOOL, "value": True, "confidence": 1.0}  # type: ignore[index]
    assert body["grammar_uri"] == BOOL  # type: ignore[index]
    assert "alternatives" not in body  # type: ignore[operator]


def test_speech_resuming_continues_the_utterance() -> None:
    c = _started(uris=(DIGITS,), speech_complete_timeout=800, speech_incomplete_timeout=1500)
    c.utterance(300, 800, "four two", confidence=1.0)
    assert c.silence_ms(1000) == []  # partial: incomplete timeout 1500 from 500 ms
    c.utterance(1300, 1600, "seven", confidence=1.0)
    # clock 1000 ms; silence from 1600 ms; full match → due 2400 ms
    assert c.silence_ms(1399) == []
    ev = _complete(c.silence_ms(1))
    assert ev["completion_cause"] == "Success"
    assert ev["body"]["nlu"]["value"] == "427"  # type: ignore[index]
    assert ev["body"]["asr"]["transcript"] == "four two seven"  # type: ignore[index]


def test_a_joined_final_supersedes_the_segments_it_was_decoded_with() -> None:
    c = _started(
        uris=(DIGITS,),
        speech_complete_timeout=800,
        speech_incomplete_timeout=1500,
        speech_nomatch_timeout=1200,
    )
    # Speech resuming before the longest end timer is decoded joined to what came before.
    assert c.started[-1].options.join_within_ms == 1500
    c.utterance(300, 800, "four two", confidence=1.0)
    assert c.silence_ms(1000) == []
    c.rec(SpeechStarted(1300))
    c.rec(SpeechEnded(1600))
    # The recognizer decoded 300–1600 ms as one utterance: its final starts at 300 ms.
    c.rec(Final("four two seven", 1.0, 300, 1600, nbest=(Alternative("four two seven", 1.0),)))
    ev = _complete(c.silence_ms(1400))
    assert ev["completion_cause"] == "Success"
    assert ev["body"]["asr"]["transcript"] == "four two seven"  # type: ignore[index]
    assert ev["body"]["nlu"]["value"] == "427"  # type: ignore[index]
    assert ev["body"]["asr"]["start"] == EPOCH_MS + 300  # type: ignore[index]


def test_hotword_mode_joins_no_utterances() -> None:
    c = _started(recognition_mode="hotword")
    assert c.started[-1].options.join_within_ms == 0


def test_partial_match_after_incomplete_timeout() -> None:
    c = _started(uris=(DATE,), speech_incomplete_timeout=1500)
    c.utterance(300, 800, "march fifth", confidence=1.0)
    assert c.silence_ms(2299) == []
    ev = _complete(c.silence_ms(1))
    assert (ev["completion_cause"], ev["completion_reason"]) == ("PartialMatch", "partial match")
    assert ev["body"]["nlu"]["value"] == {  # type: ignore[index]
        "day": 5,
        "month": 3,
        "year": None,
        "valid": False,
    }


def test_nomatch_after_nomatch_timeout() -> None:
    c = _started(speech_nomatch_timeout=3000)
    c.utterance(300, 800, "maybe later")
    assert c.silence_ms(3799) == []
    ev = _complete(c.silence_ms(1))
    assert (ev["completion_cause"], ev["completion_reason"]) == (
        "NoMatch",
        "unable to match grammar",
    )
    assert ev["body"]["asr"]["transcript"] == "maybe later"  # type: ignore[index]
    assert ev["body"]["nlu"] is None and ev["body"]["grammar_uri"] == ""  # type: ignore[index]


def test_rejected_utterance_is_nomatch_with_null_asr() -> None:
    c = _started(speech_nomatch_timeout=1000)
    c.nomatch(300, 800)
    assert c.silence_ms(1799) == []
    ev = _complete(c.silence_ms(1))
    assert ev["completion_cause"] == "NoMatch" and ev["body"]["asr"] is None  # type: ignore[index]


def test_confidence_below_threshold() -> None:
    c = _started(uris=(DATE,), confidence_threshold=0.8)
    c.utterance(300, 800, "march fifth", confidence=1.0)  # partial date: confidence 0.667
    ev = _complete(c.silence_ms(3000))
    assert (ev["completion_cause"], ev["completion_reason"]) == ("NoMatch", "confidence too low")


def test_late_result_completes_at_once() -> None:
    c = _started(speech_complete_timeout=200)
    c.rec_started(300)
    c.rec_ended(500)
    assert c.silence_ms(3000) == []  # result still being decoded: no decision yet
    events = c.rec_final("yes", 300, 500)
    assert names(events) == ["RECOGNITION-COMPLETE"]


@pytest.mark.parametrize(
    ("transcripts", "cause"),
    [
        (("yes",), "SuccessMaxtime"),
        (("maybe",), "NoMatchMaxtime"),
        ((), "NoMatchMaxtime"),
    ],
)
def test_recognition_timeout(transcripts: tuple[str, ...], cause: str) -> None:
    c = _started(
        recognition_timeout=2000, speech_complete_timeout=5000, speech_nomatch_timeout=5000
    )
    c.rec_started(400)  # no pre-roll: session 400 ms
    for t in transcripts:
        c.rec_ended(800)
        c.rec_final(t, 400, 800)
        c.rec_started(900)
    assert c.silence_samples(2400 * 8 - 1) == []
    ev = _complete(c.silence_samples(1))
    assert (ev["completion_cause"], ev["completion_reason"]) == (cause, "recognition timeout")


def test_partial_match_maxtime() -> None:
    c = _started(uris=(DATE,), recognition_timeout=1000, speech_incomplete_timeout=5000)
    c.utterance(300, 600, "march fifth", confidence=1.0)
    assert c.silence_ms(1299) == []
    ev = _complete(c.silence_ms(1))
    assert ev["completion_cause"] == "PartialMatchMaxtime"


def test_several_grammars_first_match_wins_and_uri_as_written() -> None:
    kw = "builtin:speech/keywords?alternatives=yes|sales"
    c = _started(uris=(kw, BOOL))
    c.utterance(300, 600, "yes", confidence=1.0)
    ev = _complete(c.silence_ms(2000))
    assert ev["body"]["grammar_uri"] == kw  # type: ignore[index]
    assert ev["body"]["nlu"]["type"] == "builtin:speech/keywords"  # type: ignore[index]
    assert c.started[0].options.grammar is None  # several grammars: free decoding


def test_full_match_of_later_grammar_beats_earlier_partial() -> None:
    c = _started(uris=(DATE, BOOL))
    c.utterance(300, 600, "yes", confidence=1.0)
    ev = _complete(c.silence_ms(2000))
    assert ev["body"]["grammar_uri"] == BOOL  # type: ignore[index]


def test_session_alias_keeps_uri_and_type_without_query() -> None:
    c = Client()
    c.open()
    c.cmd("DEFINE-GRAMMAR", {"content_id": "code"}, "builtin:speech/spelling/digits?length=3")
    c.recognize("session:code")
    c.utterance(300, 600, "four two seven", confidence=1.0)
    ev = _complete(c.silence_ms(2000))
    assert ev["body"]["grammar_uri"] == "session:code"  # type: ignore[index]
    assert ev["body"]["nlu"]["type"] == "builtin:speech/spelling/digits"  # type: ignore[index]


def test_n_best_alternatives() -> None:
    c = _started(n_best_list_length=3)
    c.utterance(
        300, 600, "yes", confidence=0.9, nbest=(("yes", 0.9), ("no", 0.6), ("nah", 0.3), ("x", 0.1))
    )
    ev = _complete(c.silence_ms(2000))
    alts = ev["body"]["alternatives"]  # type: ignore[index]
    assert [a["asr"]["transcript"] for a in alts] == ["no", "nah"]
    assert alts[0]["nlu"]["value"] is False and alts[0]["grammar_uri"] == BOOL
    assert all("alternatives" not in a for a in alts)


def test_n_best_present_but_empty_without_speech() -> None:
    c = _started(n_best_list_length=2, no_input_timeout=100)
    ev = _complete(c.silence_ms(200))
    assert ev["body"]["alternatives"] == []  # type: ignore[index]


def test_start_of_input_exactly_once_in_normal_mode() -> None:
    c = _started(speech_nomatch_timeout=100, speech_complete_timeout=100)
    first = c.utterance(300, 400, "uh")
    second = c.utterance(420, 500, "yes")
    done = c.silence_ms(1000)
    assert names(first + second + done) == ["START-OF-INPUT", "RECOGNITION-COMPLETE"]


def test_error_completes_with_error_and_start_of_input_first() -> None:
    c = _started()
    events = c.error("decoder crashed")
    assert names(events) == ["START-OF-INPUT", "RECOGNITION-COMPLETE"]
    assert events[1]["completion_cause"] == "Error"
    assert events[1]["body"]["asr"] is None  # type: ignore[index]


def test_hotword_ignores_filler_and_never_sends_start_of_input() -> None:
    c = _started(uris=(DIGITS,), recognition_mode="hotword", hotword_max_duration=10000)
    assert c.utterance(300, 800, "hold on let me see", confidence=1.0) == []
    assert c.silence_ms(5000) == []  # no nomatch in hotword mode
    assert c.utterance(5400, 5800, "four two", confidence=1.0) == []
    events = c.utterance(5900, 6200, "seven", confidence=1.0)
    assert names(events) == ["RECOGNITION-COMPLETE"]
    ev = events[0]
    assert ev["completion_cause"] == "Success"
    assert ev["body"]["nlu"]["value"] == "427"  # type: ignore[index]
    # the grammar's own filler tolerance decides where the match starts
    assert ev["body"]["asr"]["transcript"].endswith("four two seven")  # type: ignore[index]


def test_hotword_max_duration_exact() -> None:
    c = _started(recognition_mode="hotword", hotword_max_duration=2000)
    c.utterance(300, 800, "blah blah")  # onset at 300 ms
    assert c.silence_samples(2300 * 8 - 1) == []
    (ev,) = c.silence_samples(1)
    assert (ev["completion_cause"], ev["completion_reason"]) == (
        "HotwordMaxtime",
        "hotword max time",
    )
    assert ev["body"]["asr"]["transcript"] == "blah blah"  # type: ignore[index]


def test_hotword_no_input() -> None:
    c = _started(recognition_mode="hotword", no_input_timeout=300)
    (ev,) = c.silence_ms(300)
    assert ev["completion_cause"] == "NoInputTimeout"


def test_silence_fill_counts_as_audio() -> None:
    c = _started(no_input_timeout=1000)
    assert c.engine.handle_silence(0) == []
    out = c._collect(c.engine.handle_silence(1000))
    assert names(out) == ["RECOGNITION-COMPLETE"]
    c2 = Client()
    assert c2.engine.handle_silence(1000) == []


def test_preroll_shifts_recognizer_time() -> None:
    c = Client()
    c.open()
    c.silence_ms(1000)
    c.recognize(BOOL, speech_complete_timeout=100)
    # the recognizer stream starts with 300 ms of pre-roll: stream 400 ms = session 1100 ms
    c.utterance(400, 600, "yes")
    ev = _complete(c.silence_ms(500))
    assert ev["body"]["asr"]["start"] == EPOCH_MS + 1100  # type: ignore[index]
    assert ev["body"]["asr"]["end"] == EPOCH_MS + 1300  # type: ignore[index]
