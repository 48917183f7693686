"""Speech capacity and latency (a figure, not a test).

* **Live transcription sessions per core**: N Whisper sessions (``tiny.en``, one worker thread
  = one core) each fed a corpus clip in real time (20 ms frames paced by the clock) with about
  50 % speech (each utterance followed by as much silence). A session *keeps up* when every
  final arrives within ``--keep-up`` seconds (default 1.5) of its endpoint and the frames were
  never held back by more than one utterance; the figure is the largest N that keeps up.
* **Grammar sessions per core**: the same with PocketSphinx (one worker process) and the
  digits grammar (the constrained search alone; the Whisper cross-check, when enabled, costs
  one Whisper decode per utterance — per uncertain utterance with the opt-in evidence band of
  decision 042 — and is bounded by the Whisper figure).
  The search tries 4, 8, 12, 16, 20, 25, 30 sessions (``--long`` adds 40 and 50).
* **Memory** (RSS) per engine/worker.
* **Final latency**: from the endpoint (``SpeechEnded``, which the VAD reports
  ``speech_end_ms`` = 500 ms after the last voiced frame) to the ``Final`` (p50/p95), with
  the capacity run's load of 1 session.
* **TTS**: time to first audio and real-time factor for Piper and eSpeak NG (synthesising in
  their worker processes, decision 044), and the lateness of a 1 ms asyncio ticker while
  synthesis runs (the event loop must not block). A wake-up is late for two reasons: this
  process held the loop (work on the loop, or another thread holding the GIL), or the host
  had no free core for the loop's thread (a loaded shared host). The probe reads the loop
  thread's run-queue wait from ``/proc/self/task/<tid>/schedstat`` around each tick and
  reports both: the RESULT ``loop_block_max`` is the worst lateness *not* spent waiting for a
  core (caused by this process), INFO lines give the raw maximum and p99, and the same probe
  on an idle loop for the same duration (the host's own noise).
  Note: run-queue wait behind this process's own worker processes also counts as the
  host's (with fewer busy workers than cores there is none), and interrupt, soft-interrupt
  and steal time of a busy VM is not run-queue wait: the idle probe shows that floor.

Bounded: the default run takes about 3–4 minutes on 2 cores (``--tts-only``: under a minute);
``--long`` plays longer trials.

Run: ``.venv/bin/python benchmarks/speech_capacity.py [--long]
[--grammar-only|--tts-only|--whisper-only] [--beam-size N] [--out DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callbridge.media.constants import FRAME_BYTES, FRAME_SECONDS
from callbridge.speech.asr.base import (
    Final,
    NoMatch,
    Recognizer,
    SessionOptions,
    SpeechEnded,
)
from callbridge.speech.asr.sphinx import SphinxRecognizer
from callbridge.speech.asr.whisper import WhisperRecognizer
from callbridge.speech.grammars import load_grammar
from callbridge.speech.tts.base import Synthesizer
from callbridge.speech.tts.espeak import EspeakSynthesizer
from callbridge.speech.tts.piper import PiperSynthesizer
from speech import corpus

#: Simultaneous grammar sessions tried, in order (the search stops at the first failure).
GRAMMAR_STEPS = [4, 8, 12, 16, 20, 25, 30]

PROMPT = (
    "Thank you for calling. Your parcel will be delivered tomorrow between nine and twelve. "
    "Press one to change the delivery time, or stay on the line to speak to an agent."
)


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def result_line(name: str, value: float, unit: str, op: str, target: float) -> str:
    ok = value <= target if op == "<=" else value >= target
    shown = f"{value:.0f}" if unit in ("", "sessions") and value == int(value) else f"{value:.3g}"
    unit_part = f" {unit}" if unit else ""
    return f"RESULT {name}={shown}{unit_part} target{op}{target:g} {'PASS' if ok else 'FAIL'}"


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stream_of(clips: list[bytes], utterances: int, offset: int) -> bytes:
    """``utterances`` clips, each followed by as much silence as it lasts (≈ 50 % speech)."""
    out = bytearray()
    for k in range(utterances):
        clip = clips[(offset + k) % len(clips)]
        out += clip + bytes(len(clip))
    out += bytes(-len(out) % FRAME_BYTES)
    return bytes(out)


async def live_session(
    recognizer: Recognizer, options: SessionOptions, pcm: bytes, start_delay: float
) -> tuple[list[float], float]:
    """Feed ``pcm`` in real time; (endpoint→final latencies, worst lag behind real time)."""
    await asyncio.sleep(start_delay)
    session = recognizer.open_session(options)
    loop = asyncio.get_running_loop()
    ended: list[float] = []
    latencies: list[float] = []

    async def collect() -> None:
        async for event in session.events():
            if isinstance(event, SpeechEnded):
                ended.append(loop.time())
            elif isinstance(event, Final | NoMatch) and ended:
                latencies.append(loop.time() - ended[len(latencies)])

    collector = asyncio.create_task(collect())
    t0 = loop.time()
    lag = 0.0
    for i in range(0, len(pcm), FRAME_BYTES):
        due = t0 + (i // FRAME_BYTES) * FRAME_SECONDS
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            lag = max(lag, now - due)
        await session.push(pcm[i : i + FRAME_BYTES])
    await session.finish()
    await collector
    return latencies, lag


async def trial(
    recognizer: Recognizer,
    options: SessionOptions,
    clips: list[bytes],
    n: int,
    utterances: int,
    keep_up: float,
) -> tuple[bool, list[float], float]:
    """N staggered live sessions; (kept up, latencies, worst lag)."""
    period = sum(len(c) for c in clips[:4]) / 4 / 16000 * 2
    runs = await asyncio.gather(*(
        live_session(recognizer, options, stream_of(clips, utterances, k), period * k / n)
        for k in range(n)
    ))  # fmt: skip
    latencies = [x for lat, _ in runs for x in lat]
    lag = max(lg for _, lg in runs)
    expected = n * utterances
    ok = len(latencies) >= expected and max(latencies, default=99) <= keep_up and lag <= keep_up
    return ok, latencies, lag


async def capacity(
    name: str,
    recognizer: Recognizer,
    options: SessionOptions,
    clips: list[bytes],
    candidates: list[int],
    utterances: int,
    keep_up: float,
) -> int:
    """The largest N of ``candidates`` (ascending) that keeps up (stops at the first failure)."""
    best = 0
    for n in candidates:
        started = time.monotonic()
        ok, lat, lag = await trial(recognizer, options, clips, n, utterances, keep_up)
        print(
            f"INFO {name} N={n}: {'keeps up' if ok else 'falls behind'}; finals {len(lat)}, "
            f"latency p50 {p(lat, 0.5) * 1000:.0f} ms p95 {p(lat, 0.95) * 1000:.0f} ms "
            f"max {max(lat, default=0) * 1000:.0f} ms, lag {lag * 1000:.0f} ms "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )
        if not ok:
            break
        best = n
    return best


def _runqueue_wait_s(fd: int | None) -> float:
    """Seconds this thread has spent runnable but waiting for a core (0 if unknown)."""
    if fd is None:
        return 0.0
    return int(os.pread(fd, 128, 0).split()[1]) / 1e9


@dataclass(frozen=True)
class Lateness:
    """Loop lateness in ms: raw (``max``, ``p99``) and not spent waiting for a core."""

    max: float
    p99: float
    own_max: float
    own_p99: float

    def text(self) -> str:
        return (
            f"max {self.max:.2f} ms p99 {self.p99:.2f} ms, of which not waiting for a core "
            f"max {self.own_max:.2f} ms p99 {self.own_p99:.2f} ms"
        )


class LoopProbe:
    """A 1 ms asyncio ticker recording how late each wake-up is (the loop's blocking).

    Lateness also includes the OS not scheduling the loop's thread on a loaded host: each
    tick also records the thread's run-queue wait (``schedstat``), and the lateness beyond
    it is what this process caused. The probe is also run idle for comparison."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.own: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        try:
            fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:  # no schedstat (not Linux): raw lateness only
            fd = None
        try:
            waited = _runqueue_wait_s(fd)
            while True:
                due = loop.time() + 0.001
                await asyncio.sleep(0.001)
                late = max(0.0, loop.time() - due)
                now = _runqueue_wait_s(fd)
                self.lateness.append(late)
                self.own.append(max(0.0, late - (now - waited)))
                waited = now
        finally:
            if fd is not None:
                os.close(fd)

    def start(self) -> None:
        self.lateness, self.own = [], []
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> Lateness:
        """Lateness since :meth:`start`."""
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return Lateness(
            max(self.lateness, default=0.0) * 1000,
            p(self.lateness, 0.99) * 1000,
            max(self.own, default=0.0) * 1000,
            p(self.own, 0.99) * 1000,
        )


async def idle_lateness(seconds: float) -> Lateness:
    """The probe with nothing else running on the loop."""
    probe = LoopProbe()
    probe.start()
    await asyncio.sleep(seconds)
    return await probe.stop()


@dataclass(frozen=True)
class TtsFigures:
    first_ms: float  # median time to first audio
    rtf: float
    lateness: Lateness
    busy_s: float  # seconds synthesising
    worker_rss_mb: float  # the engine's worker processes (0: in this process)


async def tts_figures(synth: Synthesizer, rounds: int) -> TtsFigures:
    """Start the engine (workers loaded and warmed), then ``rounds`` prompts under the probe."""
    await synth.start()
    await synth.synthesize("Warming up.")  # not measured
    pids = [pid for pid in synth.worker_pids() if pid]
    probe = LoopProbe()
    probe.start()
    firsts: list[float] = []
    busy = audio = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        first = None
        total = 0
        async for chunk in synth.stream(PROMPT):
            if first is None and chunk.pcm:
                first = time.perf_counter() - t0
            total += len(chunk.pcm)
        busy += time.perf_counter() - t0
        audio += total / (2 * synth.sample_rate)
        firsts.append(first or 0.0)
    lateness = await probe.stop()
    rss = sum(rss_mb(pid) for pid in pids)
    await synth.aclose()
    return TtsFigures(statistics.median(firsts) * 1000, busy / audio, lateness, busy, rss)


async def tts_results(rounds: int) -> list[str]:
    """Piper and eSpeak NG figures, the idle probe, their RESULT lines."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    base = rss_mb()
    piper = await tts_figures(PiperSynthesizer(), rounds)
    idle = await idle_lateness(piper.busy_s)
    espeak = await tts_figures(EspeakSynthesizer(), rounds)
    print(
        f"INFO memory RSS: piper worker {piper.worker_rss_mb:.0f} MB, espeak worker "
        f"{espeak.worker_rss_mb:.0f} MB (processes); this process grew {rss_mb() - base:.0f} MB"
    )
    print(f"INFO piper: first audio {piper.first_ms:.1f} ms, RTF {piper.rtf:.3f}, "
          f"loop lateness {piper.lateness.text()}")  # fmt: skip
    print(f"INFO espeak: first audio {espeak.first_ms:.2f} ms, RTF {espeak.rtf:.4f}, "
          f"loop lateness {espeak.lateness.text()}")  # fmt: skip
    print(
        f"INFO idle loop (no synthesis, same duration as piper): lateness {idle.text()}; "
        f"load average before {load}, now {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    raw = max(piper.lateness.max, espeak.lateness.max)
    print(
        f"INFO loop_block_max counts lateness not spent waiting for a core; the raw maximum "
        f"was {raw:.2f} ms (idle loop {idle.max:.2f} ms)"
    )
    own = max(piper.lateness.own_max, espeak.lateness.own_max)
    return [
        result_line("piper_first_audio", piper.first_ms, "ms", "<=", 120),
        result_line("espeak_first_audio", espeak.first_ms, "ms", "<=", 10),
        result_line("tts_rtf", max(piper.rtf, espeak.rtf), "", "<=", 0.1),
        result_line("loop_block_max", own, "ms", "<=", 2),
    ]


async def grammar_capacity(
    args: argparse.Namespace, manifest: Path, rows: list[dict[str, Any]]
) -> tuple[int, float]:
    """(grammar sessions per core, PocketSphinx worker RSS MB)."""
    digits = [
        r for r in rows
        if r["grammar"] == corpus.DIGITS and r["set"] == "grammar" and r["noise"] == "clean"
    ][:24]  # fmt: skip
    digit_clips = [corpus.audio(manifest, r) for r in digits]
    utterances = 3 if args.long else 2
    sphinx = SphinxRecognizer(workers=1, queue_size=64)
    await sphinx.start()
    (pid,) = sphinx.pool.worker_pids()
    sphinx_rss = rss_mb(pid) if pid else float("nan")
    gopts = SessionOptions(grammar=load_grammar(corpus.DIGITS))
    await sphinx.recognize(digit_clips[0], gopts.grammar)  # warm-up (grammar compiled)
    # Start small: a first step that already fails would report 0 and say nothing.
    steps = GRAMMAR_STEPS + ([40, 50] if args.long else [])
    s_n = await capacity("grammar", sphinx, gopts, digit_clips, steps, utterances, args.keep_up)
    await sphinx.aclose()
    return s_n, sphinx_rss


async def run(args: argparse.Namespace) -> int:
    print(f"INFO load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.tts_only:
        print("\n".join(await tts_results(10 if args.long else 5)))
        return 0
    manifest = corpus.build(args.out, args.seed)
    rows = corpus.load(manifest)
    free = [r for r in rows if r["set"] == "free" and r["noise"] == "clean"][:24]
    free_clips = [corpus.audio(manifest, r) for r in free]
    utterances = 3 if args.long else 2
    results: list[str] = []
    if args.grammar_only:
        s_n, _ = await grammar_capacity(args, manifest, rows)
        print(f"INFO load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(result_line("grammar_sessions_per_core", s_n, "sessions", ">=", 25))
        return 0

    # -- Whisper -----------------------------------------------------------------------
    base = rss_mb()
    whisper = WhisperRecognizer(workers=1, queue_size=64)
    if args.beam_size is not None:  # free finals' beam (decision 045 addendum)
        whisper.beam_size = args.beam_size
    await whisper.start()
    whisper_rss = rss_mb() - base
    print(f"INFO whisper free finals: beam {whisper.beam_size}", flush=True)
    await whisper.transcribe(free_clips[0])  # warm-up
    opts = SessionOptions()
    _, lat1, _ = await trial(whisper, opts, free_clips, 1, 4 if args.long else 3, 99)
    print(
        f"INFO whisper final latency (1 session): p50 {p(lat1, 0.5) * 1000:.0f} ms "
        f"p95 {p(lat1, 0.95) * 1000:.0f} ms over {len(lat1)} utterances "
        f"(+{opts.speech_end_ms} ms endpointing silence before the endpoint)",
        flush=True,
    )
    steps = [4, 6, 8, 10, 12, 16] if args.long else [4, 8, 10, 12]
    w_n = await capacity("whisper", whisper, opts, free_clips, steps, utterances, args.keep_up)
    await whisper.aclose()
    if args.whisper_only:
        print(f"INFO load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(result_line("whisper_sessions_per_core", w_n, "sessions", ">=", 8))
        print(result_line("final_latency_p95", p(lat1, 0.95) * 1000, "ms", "<=", 400))
        return 0

    s_n, sphinx_rss = await grammar_capacity(args, manifest, rows)

    # -- TTS -------------------------------------------------------------------------
    print(
        f"INFO memory RSS: whisper worker {whisper_rss:.0f} MB (thread, in-process), "
        f"pocketsphinx worker {sphinx_rss:.0f} MB (process)"
    )
    tts = await tts_results(10 if args.long else 5)

    results.append(result_line("whisper_sessions_per_core", w_n, "sessions", ">=", 8))
    results.append(result_line("grammar_sessions_per_core", s_n, "sessions", ">=", 25))
    results.append(result_line("final_latency_p95", p(lat1, 0.95) * 1000, "ms", "<=", 400))
    results.extend(tts)
    print("\n".join(results))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Speech capacity and latency.")
    parser.add_argument("--long", action="store_true", help="longer trials, more steps")
    parser.add_argument("--out", type=Path, default=corpus.DEFAULT_OUT, help="corpus directory")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument(
        "--grammar-only", action="store_true", help="only the grammar (PocketSphinx) capacity"
    )
    parser.add_argument("--tts-only", action="store_true", help="only the TTS figures")
    parser.add_argument(
        "--whisper-only", action="store_true", help="only the Whisper capacity and latency"
    )
    parser.add_argument("--keep-up", type=float, default=1.5, help="max seconds behind")
    parser.add_argument(
        "--beam-size",
        type=int,
        default=None,
        help="beams of Whisper's free finals (default: the recognizer's)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
