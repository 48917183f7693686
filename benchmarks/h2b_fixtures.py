"""Generate the H2B recognition fixtures of ``tests/fixtures/h2b/`` from the speech corpus.

The fixtures use the folder format of the ``uhlive`` SDK's recognition test runner, so the same
folder runs with ``callbridge h2b-test`` and with the SDK's own runner: one audio file per case
(the codec is the extension: ``.pcm`` = 16-bit little-endian linear PCM, ``.g711a`` = A-law,
``.g711u`` = µ-law, all 8 kHz mono) and one ``.test`` TOML file naming it::

    audio = "digits-01-piper-clean.pcm"
    grammars = ["builtin:speech/spelling/digits"]

    [params]
    recognition_mode = "normal"
    speech_language = "en"
    no_input_timeout = 5000
    ...

    [expected]
    completion_cause = "Success"

    [expected.interpretation]
    type = "builtin:speech/spelling/digits"
    value = "4821"

``[expected.interpretation]`` is left out when no interpretation is expected (``NoMatch``,
``NoInputTimeout``).

Audio comes from ``benchmarks/speech/corpus.py`` (synthetic: Piper and eSpeak NG voices, clean
and with white or babble noise at 10 dB SNR, through a G.711 µ-law round trip). The selection is
deterministic (a fixed seed picks clips per grammar, alternating engines, noise and codecs);
expected values are the corpus' reference values (what the grammar makes of the reference
text). Out-of-grammar sentences become ``NoMatch`` cases against the grammar they must be
rejected by, and one silent clip a ``NoInputTimeout`` case.

Run: ``.venv/bin/python benchmarks/h2b_fixtures.py [--out tests/fixtures/h2b] [--corpus DIR]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callbridge.media.g711 import alaw_encode, ulaw_encode
from callbridge.speech.grammars import MatchKind, load_grammar
from speech import corpus

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "h2b"
SEED = 6
TRANSCRIBE = "builtin:speech/transcribe"

#: Fixtures per grammar (name, corpus grammar URI or None for free speech, count).
PLAN: tuple[tuple[str, str | None, int], ...] = (
    ("digits", corpus.DIGITS, 8),
    ("boolean", corpus.BOOLEAN, 8),
    ("keywords", corpus.KEYWORDS, 8),
    ("spelled", corpus.SPELLED, 4),
    ("phone", corpus.PHONE, 4),
    ("zipcode", corpus.ZIPCODE, 4),
    ("date", corpus.DATE, 4),
    ("address", corpus.ADDRESS, 4),
    ("transcribe", None, 4),
)
#: Out-of-grammar (NoMatch) fixtures, cycled over the corpus' OOG grammars.
NOMATCH_COUNT = 6
CODECS = ("pcm", "g711a", "g711u")
#: Parameters every fixture sets (explicit so a fixture means the same on any server).
BASE_PARAMS: dict[str, Any] = {
    "recognition_mode": "normal",
    "speech_language": "en",
    "no_input_timeout": 5000,
    "recognition_timeout": 20000,
    "speech_complete_timeout": 800,
    "speech_incomplete_timeout": 1500,
    "speech_nomatch_timeout": 1500,
}
#: The phone-number grammar takes its country from the language's region.
LANGUAGE = {"phone": "en-US"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (same escapes)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _table(name: str, values: dict[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items()), ""]


def test_file(
    audio: str, grammars: list[str], params: dict[str, Any], cause: str, nlu: Any, comment: str
) -> str:
    """The ``.test`` TOML text of one fixture (``nlu`` = (type, value) or None)."""
    lines = [f"# {comment}", f"audio = {_toml_value(audio)}", f"grammars = {_toml_value(grammars)}"]
    lines += ["", *_table("params", params), *_table("expected", {"completion_cause": cause})]
    if nlu is not None:
        nlu_type, value = nlu
        if isinstance(value, dict):
            lines += _table("expected.interpretation", {"type": nlu_type})
            lines += _table("expected.interpretation.value", value)
        else:
            lines += _table("expected.interpretation", {"type": nlu_type, "value": value})
    return "\n".join(lines).rstrip() + "\n"


def encode(pcm: bytes, codec: str) -> bytes:
    """A clip's bytes in the fixture codec."""
    if codec == "g711a":
        return alaw_encode(pcm)
    if codec == "g711u":
        return ulaw_encode(pcm)
    return pcm


def _pick(rows: list[dict[str, Any]], count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` clips of distinct texts, alternating Piper/eSpeak and clean/noisy."""
    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_text.setdefault(row["text"], []).append(row)
    texts = sorted(by_text)
    rng.shuffle(texts)
    out: list[dict[str, Any]] = []
    for i, text in enumerate(texts[:count]):
        engine = ("piper", "espeak")[i % 2]
        clean = (i // 2) % 2 == 0
        candidates = [r for r in by_text[text] if r["engine"] == engine] or by_text[text]
        wanted = [r for r in candidates if (r["noise"] == "clean") == clean] or candidates
        out.append(sorted(wanted, key=lambda r: str(r["id"]))[0])
    return out


def _jsonable(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(_jsonable(v) for v in value.values())
    return True


def generate(out: Path, corpus_dir: Path) -> list[str]:
    """Write the fixtures into ``out`` (emptied of old fixtures first); return the test names."""
    manifest = corpus.build(corpus_dir)
    rows = corpus.load(manifest)
    rng = random.Random(SEED)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.suffix in {".test", ".pcm", ".g711a", ".g711u"}:
            old.unlink()
    names: list[str] = []
    n = 0

    def emit(
        name: str, pcm: bytes, grammars: list[str], params: dict[str, Any], cause: str, nlu: Any,
        comment: str,
    ) -> None:  # fmt: skip
        nonlocal n
        codec = CODECS[n % len(CODECS)]
        n += 1
        audio = f"{name}.{codec}"
        (out / audio).write_bytes(encode(pcm, codec))
        (out / f"{name}.test").write_text(
            test_file(audio, grammars, params, cause, nlu, comment), encoding="utf-8"
        )
        names.append(name)

    for short, uri, count in PLAN:
        pool = [r for r in rows if r["set"] == ("free" if uri is None else "grammar")]
        if uri is not None:
            pool = [r for r in pool if r["grammar"] == uri]
        grammar = uri or TRANSCRIBE
        params = dict(BASE_PARAMS, speech_language=LANGUAGE.get(short, "en"))
        picked = _pick(pool, count, rng)
        for i, row in enumerate(picked, 1):
            got = load_grammar(grammar).interpret(row["text"])
            assert got.kind is MatchKind.FULL, (row, got)
            if not _jsonable(got.value):
                continue
            nlu_type = grammar.split("?", 1)[0]
            emit(
                f"{short}-{i:02d}-{row['engine']}-{row['noise']}",
                corpus.audio(manifest, row),
                [grammar],
                params,
                "Success",
                (nlu_type, got.value),
                f"{row['id']} ({row['voice']}, {row['noise']}): {row['text']}",
            )
    oog = [r for r in rows if r["set"] == "oog"]
    for i, row in enumerate(_pick(oog, NOMATCH_COUNT, rng), 1):
        short = corpus.GRAMMAR_NAMES[row["grammar"]]
        emit(
            f"nomatch-{i:02d}-{short}-{row['engine']}-{row['noise']}",
            corpus.audio(manifest, row),
            [row["grammar"]],
            dict(BASE_PARAMS),
            "NoMatch",
            None,
            f"{row['id']} ({row['voice']}, {row['noise']}), out of grammar: {row['text']}",
        )
    emit(
        "noinput-01-silence",
        bytes(2 * 8000 * 2),
        [corpus.BOOLEAN],
        dict(BASE_PARAMS, no_input_timeout=1500),
        "NoInputTimeout",
        None,
        "2 s of digital silence: no speech before no_input_timeout",
    )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder")
    parser.add_argument("--corpus", type=Path, default=corpus.DEFAULT_OUT, help="corpus folder")
    args = parser.parse_args(argv)
    names = generate(args.out, args.corpus)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"{args.out}: {len(names)} fixtures, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
