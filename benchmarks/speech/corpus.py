"""The English telephone speech corpus of the speech benchmarks (built once, cached).

Every text of the corpus is spoken twice — once by Piper (the ``en_US-joe-medium`` voice at
length scale 0.9, 1.0 or 1.15) and once by eSpeak NG (four voices at three speeds) — and each
rendering is stored clean and with noise at 10 dB SNR (white noise or a babble of other
corpus voices, alternating), after 8 kHz conversion and a G.711 µ-law round trip: what a
phone call carries. Texts cover:

* every grammar of the catalogue: ``spelling/digits``, ``boolean`` (many yes/no phrasings),
  ``keywords``, ``spelling/mixed`` (spelled codes), ``spelling/phone_number``, ``date``,
  ``zipcode``, ``postal_address``;
* free sentences (calls, banking, delivery) for word error rates;
* out-of-grammar sentences, each paired with a grammar it must be rejected by.

``manifest.jsonl`` has one JSON object per clip: ``id``, ``path`` (relative), ``text`` (the
expected transcript), ``set`` (``free`` / ``grammar`` / ``oog``), ``domain`` (free sentences)
or ``grammar`` (URI) and ``expected`` (the grammar's value of the text; ``null`` for
out-of-grammar), ``engine``, ``voice``, ``speed``, ``noise`` (``clean``/``white``/``babble``),
``snr_db``, ``seconds``.

Deterministic: texts, voices, noise and mixing come from one seed; the cache is rebuilt only
when the seed or the corpus version changes. Default location ``var/speech-corpus/``.

Run: ``.venv/bin/python benchmarks/speech/corpus.py [--out DIR] [--seed N] [--force]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callbridge.media.g711 import ulaw_decode, ulaw_encode
from callbridge.media.wav import read_wav, write_wav
from callbridge.speech.grammars import MatchKind, load_grammar
from callbridge.speech.tts.base import Synthesizer, parse_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "var" / "speech-corpus"
VERSION = 3
DEFAULT_SEED = 20240603
SNR_DB = 10.0
LEAD_MS = 300
TAIL_MS = 600

DIGITS = "builtin:speech/spelling/digits"
BOOLEAN = "builtin:speech/boolean"
KEYWORDS = (
    "builtin:speech/keywords?alternatives="
    "billing|technical support|sales|cancel my subscription|opening hours"
)
SPELLED = "builtin:speech/spelling/mixed"
PHONE = "builtin:speech/spelling/phone_number"
DATE = "builtin:speech/date"
ZIPCODE = "builtin:speech/zipcode"
ADDRESS = "builtin:speech/postal_address"
#: Short names used in reports.
GRAMMAR_NAMES = {
    DIGITS: "digits",
    BOOLEAN: "boolean",
    KEYWORDS: "keywords",
    SPELLED: "spelled",
    PHONE: "phone",
    DATE: "date",
    ZIPCODE: "zipcode",
    ADDRESS: "address",
}

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
            "sixteenth", "seventeenth", "eighteenth", "nineteenth", "twentieth",
            "twenty first", "twenty second", "twenty third", "twenty fourth", "twenty fifth",
            "twenty sixth", "twenty seventh", "twenty eighth"]  # fmt: skip
YEARS = ["nineteen eighty four", "nineteen seventy two", "two thousand and ten",
         "two thousand twenty", "nineteen ninety nine", "two thousand and three"]  # fmt: skip

FREE = {
    "calls": [
        "Thank you for calling, how can I help you today?",
        "I am calling about the appointment I booked last week.",
        "Could you transfer me to someone in the sales department?",
        "Please hold the line while I check your file.",
        "I tried to call yesterday but nobody answered the phone.",
        "Can you call me back later this afternoon?",
        "The line was very bad during our last conversation.",
        "I would like to speak to the manager please.",
        "Your call is important to us, please stay on the line.",
        "I missed a call from this number this morning.",
        "Could you repeat that more slowly please?",
        "I will send you a text message with the details.",
        "We are open from nine in the morning until six in the evening.",
        "Sorry, I did not catch your name.",
        "Let me put you through to the right person.",
    ],
    "banking": [
        "I would like to check the balance of my savings account.",
        "My credit card was declined at the store this morning.",
        "Can you block my card, I think I lost it?",
        "I need to transfer money to my daughter's account.",
        "When will the payment appear on my statement?",
        "I want to increase the limit on my credit card.",
        "There is a charge on my account that I do not recognize.",
        "Please send me a new debit card by mail.",
        "I would like to open a joint account with my wife.",
        "What is the interest rate on the personal loan?",
        "My salary has not arrived in my account yet.",
        "I forgot the password for the online banking service.",
        "Could you explain the fees on my last statement?",
        "I want to set up a monthly payment for my rent.",
        "The cash machine kept my card last night.",
    ],
    "delivery": [
        "My parcel was supposed to arrive yesterday.",
        "Can you deliver the package to my neighbor instead?",
        "I would like to change the delivery address of my order.",
        "The driver left a note but I was at home all day.",
        "The box arrived damaged and the screen is broken.",
        "Where can I pick up my package this evening?",
        "I want to return the shoes, they are too small.",
        "How long does the delivery take to the countryside?",
        "The tracking page has not changed for three days.",
        "Please leave the parcel at the back door.",
        "I ordered two chairs but only one was delivered.",
        "Can I choose a delivery time in the morning?",
        "The courier asked me to sign but I was not there.",
        "My order is missing the charging cable.",
        "I would like a refund for the late delivery.",
    ],
}

OUT_OF_GRAMMAR = [
    "I am not sure what you mean by that.",
    "Could you please send me the invoice by email tomorrow?",
    "What is the weather going to be like this weekend?",
    "My neighbor has a very friendly cat.",
    "I was hoping to talk to somebody about my problem.",
    "The train was late again this morning.",
    "Let me think about it and get back to you.",
    "Maybe we could discuss this another time.",
    "I would rather not answer that question.",
    "The kids are playing in the garden.",
    "Hold on, somebody is knocking at the door.",
    "Can you tell me more about the offer?",
    "It depends on what my husband thinks.",
    "I have been waiting on hold for ages.",
    "The music on the line is really annoying.",
    "Sorry, I was talking to my colleague.",
    "We had a lovely holiday by the sea.",
    "The coffee machine at work is broken.",
    "Honestly, I have no idea.",
    "Give me a minute to find my glasses.",
]
#: Grammars out-of-grammar sentences are tested against (cycled).
OOG_GRAMMARS = [BOOLEAN, DIGITS, KEYWORDS, SPELLED, ZIPCODE]

YES = ["Yes.", "Yeah.", "Yes please.", "Yes, that is correct.", "Yep.", "Sure.",
       "Absolutely.", "Of course.", "Yes, that's right.", "Correct."]  # fmt: skip
NO = ["No.", "Nope.", "No thank you.", "No, that's wrong.", "Not at all.", "No way.",
      "Definitely not.", "No, it is not.", "Nah.", "No, please don't."]  # fmt: skip
KEYWORD_PHRASES = [
    ("Billing, please.", "billing"), ("I need technical support.", "technical support"),
    ("Sales.", "sales"), ("I want to cancel my subscription.", "cancel my subscription"),
    ("What are your opening hours?", "opening hours"), ("Technical support.", "technical support"),
    ("I have a question about billing.", "billing"), ("Put me through to sales please.", "sales"),
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Text:
    """One text of the corpus with its set, grammar and expected value."""

    text: str
    set: str  # free | grammar | oog
    grammar: str | None = None
    domain: str = ""
    intended: Any = None


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _say_digits(code: str) -> str:
    return " ".join(NUMBERS[int(c)] for c in code)


def grammar_texts(rng: random.Random) -> list[Text]:
    """The grammar part: texts whose intended values the interpreters must recover."""
    out: list[Text] = []
    for i in range(20):
        code = _digits(rng, rng.randint(4, 8))
        frame = ["{}.", "My code is {}.", "It's {}.", "The number is {}."][i % 4]
        out.append(Text(frame.format(_say_digits(code)), "grammar", DIGITS, intended=code))
    for phrase in YES:
        out.append(Text(phrase, "grammar", BOOLEAN, intended=True))
    for phrase in NO:
        out.append(Text(phrase, "grammar", BOOLEAN, intended=False))
    for phrase, keyword in KEYWORD_PHRASES * 2:
        out.append(Text(phrase, "grammar", KEYWORDS, intended=keyword))
    for _ in range(16):
        pieces = [rng.choice(LETTERS) for _ in range(2)] + list(_digits(rng, rng.randint(2, 4)))
        spoken = ", ".join(NUMBERS[int(p)] if p.isdigit() else p for p in pieces)
        out.append(Text(spoken + ".", "grammar", SPELLED, intended="".join(pieces).lower()))
    for i in range(10):
        area, mid, last = rng.choice(["415", "212", "646", "312", "617"]), _digits(rng, 3), \
            _digits(rng, 4)  # fmt: skip
        mid = str(rng.randint(2, 9)) + mid[1:]
        frame = ["My number is {}, {}, {}.", "{}, {}, {}."][i % 2]
        spoken = frame.format(_say_digits(area), _say_digits(mid), _say_digits(last))
        out.append(Text(spoken, "grammar", PHONE, intended=f"+1{area}{mid}{last}"))
    for i in range(10):
        month, day, year = rng.randrange(12), rng.randrange(28), rng.choice(YEARS)
        frame = ["{m} {d}, {y}.", "The {d} of {m} {y}."][i % 2]
        spoken = frame.format(m=MONTHS[month], d=ORDINALS[day], y=year)
        out.append(Text(spoken, "grammar", DATE, intended=(day + 1, month + 1)))
    for i in range(10):
        zipcode = _digits(rng, 5)
        frame = ["{}.", "My zip code is {}."][i % 2]
        out.append(Text(frame.format(_say_digits(zipcode)), "grammar", ZIPCODE, intended=zipcode))
    streets = ["Main Street", "Oak Avenue", "Maple Road", "Park Lane", "Elm Street"]
    cities = ["Boston", "Chicago", "Denver", "Seattle", "Portland"]
    numbers = ["twelve", "forty two", "one hundred and five", "seven", "three hundred"]
    for i in range(8):
        zipcode = _digits(rng, 5)
        spoken = (
            f"{numbers[i % 5]} {streets[(i + 2) % 5]}, {cities[i % 5]}, {_say_digits(zipcode)}."
        )
        out.append(Text(spoken[0].upper() + spoken[1:], "grammar", ADDRESS, intended=zipcode))
    return out


def all_texts(seed: int) -> list[Text]:
    """Every text of the corpus, checked against the interpreters."""
    rng = random.Random(seed)
    texts = [Text(s, "free", domain=d) for d, sentences in FREE.items() for s in sentences]
    texts += grammar_texts(rng)
    texts += [
        Text(s, "oog", OOG_GRAMMARS[i % len(OOG_GRAMMARS)]) for i, s in enumerate(OUT_OF_GRAMMAR)
    ]
    for t in texts:  # the reference text must mean what the corpus says it means
        if t.grammar is None:
            continue
        got = load_grammar(t.grammar).interpret(t.text)
        if t.set == "oog":
            assert got.kind is MatchKind.NONE, (t, got)
            continue
        assert got.kind is MatchKind.FULL, (t, got)
        value = got.value
        if t.grammar == DATE:
            assert isinstance(value, dict)
            value = (value["day"], value["month"])
        elif t.grammar == ADDRESS:
            assert isinstance(value, dict)
            value = value["zipcode"]
        assert value == t.intended, (t, got)
    return texts


# -- audio --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendering:
    """How a text is spoken."""

    engine: str
    voice: str
    speed: float  # Piper length scale, or eSpeak words per minute


PIPER_SCALES = (0.9, 1.0, 1.15)
ESPEAK_VOICES = ("en-us", "en-us+f3", "en-gb", "en-gb+f3")
ESPEAK_WPM = (145, 165, 190)


def renderings(index: int) -> tuple[Rendering, Rendering]:
    """The Piper and the eSpeak rendering of text ``index`` (cycling voices and speeds)."""
    piper = Rendering("piper", "en_US-joe-medium", PIPER_SCALES[index % 3])
    espeak = Rendering("espeak", ESPEAK_VOICES[index % 4], float(ESPEAK_WPM[(index // 4) % 3]))
    return piper, espeak


class _Engines:
    def __init__(self) -> None:
        self._synths: dict[tuple[str, float], Synthesizer] = {}

    def synth(self, r: Rendering) -> Synthesizer:
        key = (r.engine, r.speed)
        if key not in self._synths:
            if r.engine == "piper":
                from callbridge.speech.tts.piper import PiperSynthesizer

                self._synths[key] = PiperSynthesizer(length_scale=r.speed)
            else:
                from callbridge.speech.tts.espeak import EspeakSynthesizer

                self._synths[key] = EspeakSynthesizer(wpm=int(r.speed))
        return self._synths[key]

    def speak(self, text: str, r: Rendering) -> np.ndarray[Any, np.dtype[np.float64]]:
        synth = self.synth(r)
        voice = next(v for v in synth.voices() if v.name == r.voice)
        pcm = b"".join(synth.synthesize_sentences(parse_text(text), voice))
        speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        return np.concatenate([np.zeros(LEAD_MS * 8), speech, np.zeros(TAIL_MS * 8)])


def _power(x: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    active = x[np.abs(x) > 0.02 * (np.max(np.abs(x)) + 1e-9)]
    return float(np.mean(active**2)) if active.size else 1.0


def add_noise(
    clean: np.ndarray[Any, np.dtype[np.float64]],
    noise: np.ndarray[Any, np.dtype[np.float64]],
    snr_db: float,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``clean`` plus ``noise`` scaled to ``snr_db`` against the clean speech's active power."""
    gain = np.sqrt(_power(clean) / (float(np.mean(noise**2)) + 1e-12) / 10 ** (snr_db / 10))
    return clean + gain * noise


def babble(
    pool: list[np.ndarray[Any, np.dtype[np.float64]]], n: int, rng: np.random.Generator
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Four other talkers, looped and randomly offset, each at a random level."""
    out = np.zeros(n)
    for k in rng.choice(len(pool), size=4, replace=False):
        voice = pool[int(k)]
        voice = voice[np.abs(voice) > 0] if np.any(voice) else voice
        tiled = np.resize(np.roll(voice, int(rng.integers(len(voice)))), n)
        out += tiled / (np.sqrt(np.mean(tiled**2)) + 1e-9) * rng.uniform(0.6, 1.0)
    return out


def telephone(x: np.ndarray[Any, np.dtype[np.float64]]) -> bytes:
    """Clip to PCM16, G.711 µ-law round trip."""
    pcm = np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()
    return ulaw_decode(ulaw_encode(pcm))


def _fingerprint(seed: int) -> str:
    return hashlib.sha256(f"{VERSION}:{seed}".encode()).hexdigest()[:16]


def build(out: Path = DEFAULT_OUT, seed: int = DEFAULT_SEED, *, force: bool = False) -> Path:
    """Build the corpus under ``out`` unless a complete build of this seed is cached there.

    Returns the manifest path.
    """
    manifest = out / "manifest.jsonl"
    stamp = out / "BUILD"
    if not force and stamp.is_file() and stamp.read_text().strip() == _fingerprint(seed):
        return manifest
    started = time.monotonic()
    (out / "clips").mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    texts = all_texts(seed)
    engines = _Engines()
    clean: list[tuple[Text, Rendering, np.ndarray[Any, np.dtype[np.float64]]]] = []
    for i, t in enumerate(texts):
        for r in renderings(i):
            clean.append((t, r, engines.speak(t.text, r)))
    pool = [audio for t, _, audio in clean if t.set == "free"]
    rows: list[dict[str, Any]] = []
    for n, (t, r, audio) in enumerate(clean):
        rng = np.random.default_rng([seed, n])
        kind = "white" if n % 4 < 2 else "babble"
        noise = rng.standard_normal(len(audio)) if kind == "white" else babble(
            pool, len(audio), rng
        )  # fmt: skip
        for condition, signal in (("clean", audio), (kind, add_noise(audio, noise, SNR_DB))):
            clip_id = f"{n // 2:03d}-{r.engine}-{condition}"
            path = out / "clips" / f"{clip_id}.wav"
            pcm = telephone(signal)
            write_wav(path, pcm)
            expected = None
            if t.grammar is not None and t.set == "grammar":
                expected = load_grammar(t.grammar).interpret(t.text).value
            rows.append({
                "id": clip_id, "path": f"clips/{clip_id}.wav", "text": t.text, "set": t.set,
                "domain": t.domain, "grammar": t.grammar, "expected": expected,
                **asdict(r), "noise": condition,
                "snr_db": None if condition == "clean" else SNR_DB,
                "seconds": round(len(pcm) / 16000, 3),
            })  # fmt: skip
    with manifest.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    stamp.write_text(_fingerprint(seed) + "\n")
    print(
        f"corpus: {len(rows)} clips from {len(texts)} texts in {out} "
        f"({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    return manifest


def load(manifest: Path) -> list[dict[str, Any]]:
    """The manifest rows."""
    with manifest.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def audio(manifest: Path, row: dict[str, Any]) -> bytes:
    """A clip's 8 kHz PCM16."""
    return read_wav(manifest.parent / row["path"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.seed, force=args.force)
    rows = load(manifest)
    by_set: dict[str, int] = {}
    for row in rows:
        by_set[row["set"]] = by_set.get(row["set"], 0) + 1
    print(f"{manifest}: {len(rows)} clips {by_set}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
