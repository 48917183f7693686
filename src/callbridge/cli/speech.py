"""``callbridge transcribe`` and ``callbridge say``: the speech engines on WAV files.

``callbridge transcribe FILE.wav [--grammar URI] [--engine whisper|sphinx] [--language en-US]
[--wideband] [--json]`` prints the transcript of the file and, with a grammar, the interpreted
value and its match kind (full / partial). ``callbridge say "TEXT" -o out.wav [--voice NAME]
[--engine piper|espeak] [--rate 8000] [--wideband]`` writes synthesised speech (plain text or
the SSML subset of :mod:`callbridge.speech.tts`).

Any WAV that :mod:`callbridge.media.wav` reads goes in (any supported rate, any channel count,
PCM, float, µ-law, A-law). By default both commands apply the telephone band — 8 kHz and a
G.711 µ-law round trip — so what you hear and measure is what a phone call carries;
``--wideband`` skips it: ``transcribe`` feeds the engine 16 kHz audio, ``say`` writes the
engine's audio at ``--rate`` (default 16000) without G.711.

Exit codes: 0 on success; 1 when a grammar was given and nothing matched it (the reason is
printed); 2 with one ``callbridge: …`` line on stderr for a missing or unreadable file, a bad
WAV, an unknown grammar, engine or voice, or an engine that is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from callbridge.cli.common import CommandError
from callbridge.media.constants import FRAME_BYTES, SAMPLE_RATE
from callbridge.media.g711 import alaw_decode, ulaw_decode, ulaw_encode
from callbridge.media.resample import SUPPORTED_RATES, Resampler
from callbridge.media.wav import WavFormatError, WavInfo, parse_wav
from callbridge.speech import EngineUnavailable
from callbridge.speech.asr.base import DecodeResult, NoMatch, Recognizer, SessionOptions
from callbridge.speech.asr.base import Final as FinalEvent
from callbridge.speech.grammars import Grammar, GrammarError, MatchKind, load_grammar
from callbridge.speech.grammars.base import region_of
from callbridge.speech.registry import asr_engines, create_recognizer, tts_engines
from callbridge.speech.tts.base import SsmlError, Synthesizer

__all__ = ["register", "run_say", "run_transcribe", "telephone_band"]

#: Rate fed to the engines with ``--wideband`` (both built-in models are 16 kHz models).
WIDEBAND_RATE: Final = 16000
#: Longest audio ``transcribe`` accepts (seconds): a command-line tool, not a batch system.
MAX_SECONDS: Final = 600
#: Largest WAV file read (bytes).
MAX_FILE_BYTES: Final = 200 * 1024 * 1024
EXIT_NO_MATCH: Final = 1

# WAV format tags (RIFF), as parsed by callbridge.media.wav.
_PCM, _FLOAT, _ALAW, _MULAW = 0x0001, 0x0003, 0x0006, 0x0007


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``transcribe`` and ``say`` commands."""
    t = subparsers.add_parser(
        "transcribe",
        help="Transcribe a WAV file (and interpret it with a grammar).",
        description="Print the transcript of a WAV file; with --grammar, the interpreted value.",
    )
    t.add_argument("file", metavar="FILE.wav", type=Path, help="Any WAV file (rate, channels).")
    t.add_argument("--grammar", metavar="URI", help="e.g. builtin:speech/spelling/digits")
    t.add_argument("--engine", default="whisper", help="Recognizer: whisper (default) or sphinx.")
    t.add_argument("--language", default="en-US", help="Language tag (default en-US).")
    t.add_argument(
        "--wideband", action="store_true", help="Skip telephone-band processing (8 kHz, G.711)."
    )
    t.add_argument("--json", action="store_true", help="Print one JSON object.")
    t.set_defaults(handler=run_transcribe)

    s = subparsers.add_parser(
        "say",
        help="Synthesise speech to a WAV file.",
        description="Synthesise TEXT (plain text or SSML <speak>…</speak>) to a WAV file.",
    )
    s.add_argument("text", metavar="TEXT", help="What to say (plain text or SSML).")
    s.add_argument("-o", "--output", metavar="OUT.wav", type=Path, required=True)
    s.add_argument("--voice", metavar="NAME", help="Voice name (or a Piper .onnx voice file).")
    s.add_argument("--engine", default="piper", help="Synthesizer: piper (default) or espeak.")
    s.add_argument("--language", default="en-US", help="Voice language when --voice is unset.")
    s.add_argument(
        "--rate", type=int, default=None, help="Output rate in Hz (default 8000; wideband 16000)."
    )
    s.add_argument(
        "--wideband", action="store_true", help="Skip telephone-band processing (G.711, 8 kHz)."
    )
    s.set_defaults(handler=run_say)


# -- audio helpers ---------------------------------------------------------------------------


def telephone_band(pcm: bytes) -> bytes:
    """8 kHz PCM16 through a G.711 µ-law encode/decode round trip."""
    return ulaw_decode(ulaw_encode(pcm[: len(pcm) - len(pcm) % 2]))


def _mono16(info: WavInfo, raw: bytes) -> bytes:
    """Raw WAV samples → mono PCM16 at the file's own rate."""
    tag, bits = info.format_tag, info.bits_per_sample
    samples: np.ndarray[Any, np.dtype[np.int32]]
    if tag == _MULAW:
        samples = np.frombuffer(ulaw_decode(raw), dtype="<i2").astype(np.int32)
    elif tag == _ALAW:
        samples = np.frombuffer(alaw_decode(raw), dtype="<i2").astype(np.int32)
    elif tag == _FLOAT:
        floats = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8")
        samples = np.rint(np.clip(np.nan_to_num(floats), -1.0, 1.0) * 32767).astype(np.int32)
    elif bits == 8:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif bits == 16:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((b[:, 2] << 24) | (b[:, 1] << 16)) >> 16
    else:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.int32) >> 16
    frames = samples.reshape(-1, info.channels)
    mono = frames.sum(axis=1) // info.channels if info.channels > 1 else frames.reshape(-1)
    return mono.astype("<i2").tobytes()


def _resample(pcm: bytes, src: int, dst: int) -> bytes:
    if src == dst:
        return pcm
    resampler = Resampler(src, dst, quality="HQ")
    return resampler.process(pcm) + resampler.flush()


def read_audio(path: Path, *, wideband: bool) -> tuple[bytes, int]:
    """The file as mono PCM16: 8 kHz through G.711 by default, 16 kHz with ``wideband``."""
    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CommandError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        info, raw = parse_wav(data)
    except WavFormatError as exc:
        raise CommandError(f"{path}: {exc}") from exc
    if info.frames == 0:
        raise CommandError(f"{path}: the WAV file holds no audio")
    if info.duration_seconds > MAX_SECONDS:
        raise CommandError(f"{path}: longer than {MAX_SECONDS} s")
    pcm = _mono16(info, raw)
    if wideband:
        return _resample(pcm, info.sample_rate, WIDEBAND_RATE), WIDEBAND_RATE
    return telephone_band(_resample(pcm, info.sample_rate, SAMPLE_RATE)), SAMPLE_RATE


# -- transcribe ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    transcript: str
    confidence: float
    rejected: bool
    reason: str


def _grammar(uri: str | None, language: str) -> Grammar | None:
    try:
        region_of(language)
        if uri is None:
            return None
        grammar = load_grammar(uri)
        grammar.check_language(language)
    except GrammarError as exc:
        raise CommandError(str(exc)) from exc
    return grammar


def _recognizer(name: str, grammar: Grammar | None) -> Recognizer:
    engines = asr_engines()
    if name not in engines:
        raise CommandError(f"unknown engine {name!r}; available: {', '.join(sorted(engines))}")
    try:
        if name == "sphinx":
            from callbridge.speech.asr.sphinx import SphinxRecognizer
            from callbridge.speech.asr.whisper import WhisperRecognizer

            # The cross-check rejection layer (decision 040) needs Whisper beside the grammar.
            return SphinxRecognizer(verifier=WhisperRecognizer() if grammar is not None else None)
        return create_recognizer(name)
    except EngineUnavailable as exc:
        raise CommandError(str(exc)) from exc


async def _generic(recognizer: Recognizer, pcm: bytes, options: SessionOptions) -> _Outcome:
    """Any plug-in recognizer: stream the 8 kHz audio through a session."""
    session = recognizer.open_session(options)
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    for i in range(0, len(pcm), FRAME_BYTES):
        await session.push(pcm[i : i + FRAME_BYTES])
    await session.finish()
    texts: list[str] = []
    confidences: list[float] = []
    reasons: list[str] = []
    async for event in session.events():
        if isinstance(event, FinalEvent):
            texts.append(event.transcript)
            confidences.append(event.confidence)
        elif isinstance(event, NoMatch):
            reasons.append(event.reason)
    if not texts:
        return _Outcome("", 0.0, bool(reasons), "; ".join(reasons))
    return _Outcome(" ".join(texts), min(confidences), False, "")


async def _transcribe(
    recognizer: Recognizer, pcm: bytes, rate: int, grammar: Grammar | None, language: str
) -> _Outcome:
    from callbridge.speech.asr.sphinx import SphinxRecognizer
    from callbridge.speech.asr.whisper import WhisperRecognizer

    try:
        await recognizer.start()
        result: DecodeResult
        if isinstance(recognizer, WhisperRecognizer):
            # The grammar's hot words and prompt, and its constrained second pass (decision 043).
            result = await recognizer.transcribe_for(
                pcm, grammar, language=language, sample_rate=rate
            )
        elif isinstance(recognizer, SphinxRecognizer):
            result = await recognizer.recognize(pcm, grammar, language, sample_rate=rate)
        else:
            pcm8 = _resample(pcm, rate, SAMPLE_RATE)
            return await _generic(recognizer, pcm8, SessionOptions(grammar, language))
        return _Outcome(result.transcript, result.confidence, result.rejected, result.reason)
    finally:
        await recognizer.aclose()
        if isinstance(recognizer, SphinxRecognizer) and recognizer.verifier is not None:
            await recognizer.verifier.aclose()


def run_transcribe(args: argparse.Namespace) -> int:
    """Transcribe ``args.file``; print the transcript (and the grammar's value)."""
    grammar = _grammar(args.grammar, args.language)
    pcm, rate = read_audio(args.file, wideband=args.wideband)
    recognizer = _recognizer(args.engine, grammar)
    if not recognizer.supports(grammar, args.language):
        what = grammar.type if grammar is not None else "free speech"
        raise CommandError(f"the {args.engine} engine cannot serve {what} in {args.language}")
    try:
        outcome = asyncio.run(_transcribe(recognizer, pcm, rate, grammar, args.language))
    except (EngineUnavailable, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    except RuntimeError as exc:  # a worker that could not load its model
        raise CommandError(f"{args.engine}: {exc}") from exc
    interpretation = None
    if grammar is not None and not outcome.rejected and outcome.transcript:
        interpretation = grammar.interpret(outcome.transcript, args.language)
    matched = interpretation is not None and interpretation.kind is not MatchKind.NONE
    reason = outcome.reason
    if grammar is not None and not matched and not reason:
        reason = "out of grammar" if outcome.transcript else "no speech recognized"
    if args.json:
        doc: dict[str, Any] = {
            "engine": args.engine,
            "language": args.language,
            "band": "wideband" if args.wideband else "telephone",
            "transcript": outcome.transcript,
            "confidence": outcome.confidence,
        }
        if grammar is not None:
            doc["grammar"] = grammar.uri
            doc["match"] = interpretation.kind.value if interpretation else MatchKind.NONE.value
            doc["value"] = interpretation.value if matched and interpretation else None
            doc["interpretation_confidence"] = interpretation.confidence if interpretation else 0
            if not matched:
                doc["reason"] = reason
        print(json.dumps(doc, ensure_ascii=False))
    else:
        print(outcome.transcript)
        if grammar is not None:
            if matched and interpretation is not None:
                value = json.dumps(interpretation.value, ensure_ascii=False)
                print(
                    f"{interpretation.type}: {value} "
                    f"({interpretation.kind.value} match, confidence {interpretation.confidence})"
                )
            else:
                print(f"{grammar.type}: no match ({reason})")
    return 0 if grammar is None or matched else EXIT_NO_MATCH


# -- say -------------------------------------------------------------------------------------


def _synthesizer(name: str, voice: str | None, rate: int) -> tuple[Synthesizer, str | None]:
    engines = tts_engines()
    if name not in engines:
        raise CommandError(f"unknown engine {name!r}; available: {', '.join(sorted(engines))}")
    try:
        if name == "piper":
            from callbridge.speech.tts.piper import PiperSynthesizer, voice_file

            if voice is not None and voice.endswith(".onnx"):
                try:
                    spec = voice_file(voice)
                except ValueError as exc:
                    raise CommandError(str(exc)) from exc
                return PiperSynthesizer([spec], sample_rate=rate), spec.name
            return PiperSynthesizer(sample_rate=rate), voice
        if name == "espeak":
            from callbridge.speech.tts.espeak import EspeakSynthesizer

            return EspeakSynthesizer(sample_rate=rate), voice
        if rate != SAMPLE_RATE:
            raise CommandError(f"the {name} engine only produces {SAMPLE_RATE} Hz audio")
        from callbridge.speech.registry import create_synthesizer

        return create_synthesizer(name), voice
    except EngineUnavailable as exc:
        raise CommandError(str(exc)) from exc


def _write(path: Path, pcm: bytes, rate: int) -> None:
    try:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc


def run_say(args: argparse.Namespace) -> int:
    """Synthesise ``args.text`` into ``args.output``."""
    rate = args.rate or (WIDEBAND_RATE if args.wideband else SAMPLE_RATE)
    if rate not in SUPPORTED_RATES:
        raise CommandError(f"unsupported --rate {rate}; supported: {sorted(SUPPORTED_RATES)}")
    if not args.text.strip():
        raise CommandError("nothing to say: TEXT is empty")
    out: Path = args.output
    if not out.parent.is_dir():
        raise CommandError(f"cannot write {out}: no such directory {out.parent}")
    synth, voice = _synthesizer(args.engine, args.voice, rate if args.wideband else SAMPLE_RATE)
    if voice is not None and voice not in {v.name for v in synth.voices()}:
        names = ", ".join(v.name for v in synth.voices())
        raise CommandError(f"the {args.engine} engine has no voice {voice!r}; voices: {names}")
    try:
        chosen = voice or synth.voice_for(args.language).name
        pcm = asyncio.run(synth.synthesize(args.text, voice=chosen, language=args.language))
    except SsmlError as exc:
        raise CommandError(f"bad SSML: {exc}") from exc
    except EngineUnavailable as exc:
        raise CommandError(str(exc)) from exc
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if not args.wideband:
        pcm = _resample(telephone_band(pcm), SAMPLE_RATE, rate)
    _write(out, pcm, rate)
    seconds = len(pcm) / 2 / rate
    band = "wideband" if args.wideband else "telephone band, G.711"
    print(
        f"wrote {out}: {seconds:.2f} s, {rate} Hz ({band}), voice {chosen} ({args.engine})",
        file=sys.stdout,
    )
    return 0
