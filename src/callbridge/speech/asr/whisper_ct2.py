"""Whisper decoding on CTranslate2 directly (decision 045).

faster-whisper's ``WhisperModel.transcribe()`` extracts features and runs the encoder on every
call, and for an utterance shorter than its window it decodes *again* from the last timestamp
(a second encoder pass over the trailing silence, where ``tiny.en`` invents "ok", "one." that
decision 043 then filters out). A grammar final paid that two or three times per utterance
(free pass, empty-final retry, restricted pass). Here:

* :func:`encode` computes the log-Mel features (faster-whisper's extractor) and runs the
  encoder **once** per utterance over :func:`~callbridge.speech.asr.whisper.encoder_frames`
  frames; the result (:class:`Encoded`) is reused by every decode pass of that utterance.
  For free transcription (``silence_edges``) the audio outside the talker's speech is
  silenced first (:func:`~callbridge.speech.asr.frontend.silence_outside_speech`, decision
  048): ``tiny.en`` otherwise transcribes background talkers in the lead-in and tail.
* :func:`generate` runs decodes (:class:`Pass`: greedy, or a beam search for free finals,
  ranked by total log-probability since decision 048) on encoder outputs through
  ``ctranslate2.models.Whisper.generate``, always at temperature 0;
  passes that can share a call (same window, same start-of-transcript position, same
  suppression list, timestamp mode and beam size) are decoded as one batch — a decoder step
  over a batch costs about what one sequence costs on one core.
* :func:`split_segments` cuts a timestamped decode at its timestamp tokens;
  :func:`word_timings` aligns the text tokens on the same encoder output (one
  ``align`` call) only when a consumer wants word timings.

The prompt layout (previous-text marker, hot words, the prompt, start of transcript, the
no-timestamps marker) and the average log-probability follow faster-whisper's definitions, so
the thresholds of decision 043 keep their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from callbridge.speech.asr.base import Word
from callbridge.speech.asr.frontend import silence_outside_speech

__all__ = [
    "Decoded",
    "Encoded",
    "Pass",
    "Vocabulary",
    "build_prompt",
    "encode",
    "generate",
    "speech_bounds",
    "split_segments",
    "word_timings",
]

#: Whisper's model context (tokens); half of it is the most a prompt part may take.
MAX_CONTEXT: Final = 448
#: First timestamp allowed: 1 s (50 steps of 20 ms), faster-whisper's default.
MAX_INITIAL_TIMESTAMP_INDEX: Final = 50
#: Encoder output frames per second (20 ms each).
ENCODER_FRAMES_PER_SECOND: Final = 50
#: Whisper's input rate (what :func:`encode` is given).
SAMPLE_RATE: Final = 16000
#: Length penalty of beam searches (free finals): 0 ranks the beams by their total
#: log-probability, so a beam that appends background talkers' words pays for them; with 1
#: (the average per token, faster-whisper's default) such a beam often wins (decision 048).
#: Greedy decodes have nothing to rank and keep 1.
BEAM_LENGTH_PENALTY: Final = 0.0


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Special token ids of one model and language (from faster-whisper's tokenizer)."""

    tokenizer: Any  # faster_whisper.tokenizer.Tokenizer
    sot_sequence: tuple[int, ...]
    sot_prev: int
    no_timestamps: int
    timestamp_begin: int
    eot: int

    @classmethod
    def of(cls, tokenizer: Any) -> Vocabulary:
        return cls(
            tokenizer,
            tuple(tokenizer.sot_sequence),
            int(tokenizer.sot_prev),
            int(tokenizer.no_timestamps),
            int(tokenizer.timestamp_begin),
            int(tokenizer.eot),
        )

    def text(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode([t for t in tokens if t < self.eot]))


@dataclass(frozen=True, slots=True, eq=False)
class Encoded:
    """The encoder output of one utterance (``[1, window // 2, d_model]``)."""

    output: Any  # ctranslate2.StorageView
    #: Mel frames holding audio (the rest of the window is zero padding).
    content_frames: int
    window: int
    #: 16 kHz samples of the utterance.
    samples: int


@dataclass(frozen=True, slots=True, eq=False)
class Pass:
    """One decode of an encoded utterance (temperature 0; greedy unless ``beam_size`` > 1)."""

    encoded: Encoded
    prompt: tuple[int, ...]
    #: Index of the start-of-transcript token in ``prompt`` (CTranslate2 batches only
    #: prompts that agree on it).
    sot_index: int
    max_new_tokens: int
    suppress: tuple[int, ...]
    timestamps: bool
    #: Beams of the search (1 = greedy). Passes of different beam sizes never share a
    #: ``generate`` call (it takes one beam size).
    beam_size: int = 1

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, not {self.beam_size}")


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a :class:`Pass` produced: generated tokens (timestamps included)."""

    tokens: tuple[int, ...]
    avg_logprob: float
    no_speech_prob: float
    #: Passes decoded in the same ``generate`` call (1 = alone).
    batch: int = field(default=1, compare=False)


def build_prompt(
    vocab: Vocabulary, *, hotwords: str | None, prompt: str | None, timestamps: bool
) -> tuple[tuple[int, ...], int]:
    """The decoder prompt and the index of its start-of-transcript token.

    Previous-text part (only when there are hot words or a prompt): the previous-text
    marker, the hot words, then the prompt, each cut to half the context; then the
    start-of-transcript sequence, and the no-timestamps marker when timestamps are off.
    """
    half = MAX_CONTEXT // 2 - 1
    tokens: list[int] = []
    hot = vocab.tokenizer.encode(" " + hotwords.strip()) if hotwords and hotwords.strip() else []
    previous = vocab.tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
    if hot or previous:
        tokens.append(vocab.sot_prev)
        tokens.extend(hot[:half])
        tokens.extend(previous[-half:])
    sot_index = len(tokens)
    tokens.extend(vocab.sot_sequence)
    if not timestamps:
        tokens.append(vocab.no_timestamps)
    return tuple(tokens), sot_index


def encode(
    model: Any,
    audio: np.ndarray[Any, np.dtype[np.float32]],
    window_of: Any,
    *,
    silence_edges: bool = False,
) -> Encoded:
    """Features of ``audio`` (16 kHz float) and one encoder pass over ``window_of(samples)``
    mel frames (``model`` is a ``faster_whisper.WhisperModel``). With ``silence_edges`` the
    lead-in and tail around the talker's speech are silenced first (same length; free
    transcription only, decision 048)."""
    import ctranslate2  # type: ignore[import-untyped]

    if silence_edges:
        audio = silence_outside_speech(audio, SAMPLE_RATE)
    features = model.feature_extractor(audio)  # [n_mels, frames + 1] (one hop of padding)
    content = int(features.shape[-1]) - 1
    window = int(window_of(len(audio)))
    batch = np.zeros((1, features.shape[0], window), dtype=np.float32)
    used = min(content, window)
    batch[0, :, :used] = features[:, :used]
    output = model.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
    return Encoded(output, used, window, len(audio))


_GroupKey = tuple[int, int, tuple[int, ...], bool, int]


def _group_key(p: Pass) -> _GroupKey:
    return (p.encoded.window, p.sot_index, p.suppress, p.timestamps, p.beam_size)


def generate(model: Any, passes: Sequence[Pass], *, max_batch: int = 8) -> list[Decoded]:
    """Run ``passes`` at temperature 0 (greedy, or a beam search of ``Pass.beam_size``
    ranked by total log-probability, :data:`BEAM_LENGTH_PENALTY`), batching those that can
    share a ``generate`` call (at most ``max_batch`` per call; one beam size per call). Each
    pass keeps its own token bound: a batch runs to the largest bound and longer outputs are
    cut (their score is then that of the longer decode — only a decode looping to its bound
    is affected)."""
    import ctranslate2

    ct2 = model.model
    results: list[Decoded | None] = [None] * len(passes)
    groups: dict[_GroupKey, list[int]] = {}
    for index, p in enumerate(passes):
        groups.setdefault(_group_key(p), []).append(index)
    for members in groups.values():
        for start in range(0, len(members), max_batch):
            chunk = members[start : start + max_batch]
            first = passes[chunk[0]]
            if len(chunk) == 1:
                features = first.encoded.output
                stacked = None
            else:
                stacked = np.concatenate([np.asarray(passes[i].encoded.output) for i in chunk])
                features = ctranslate2.StorageView.from_array(stacked)
            bound = max(len(passes[i].prompt) + passes[i].max_new_tokens for i in chunk)
            penalty = BEAM_LENGTH_PENALTY if first.beam_size > 1 else 1.0
            out = ct2.generate(
                features,
                [list(passes[i].prompt) for i in chunk],
                beam_size=first.beam_size,
                length_penalty=penalty,
                max_length=bound,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=list(first.suppress),
                max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
            )
            del stacked  # ``features`` borrowed its memory until the call returned
            for i, result in zip(chunk, out, strict=True):
                tokens = list(result.sequences_ids[0])
                n = len(tokens)
                # faster-whisper's average: the total log-probability (CTranslate2's score
                # is the total over length ** penalty) over the length plus the end of text.
                avg_logprob = float(result.scores[0]) * n**penalty / (n + 1)
                tokens = tokens[: passes[i].max_new_tokens]
                results[i] = Decoded(
                    tuple(tokens), avg_logprob, float(result.no_speech_prob), len(chunk)
                )
    return [r for r in results if r is not None]


def split_segments(tokens: Sequence[int], vocab: Vocabulary) -> list[list[int]]:
    """Text tokens of each segment of a timestamped decode (cut at every timestamp token);
    a decode without timestamps is one segment."""
    segments: list[list[int]] = [[]]
    for token in tokens:
        if token >= vocab.timestamp_begin:
            if segments[-1]:
                segments.append([])
        elif token < vocab.eot:
            segments[-1].append(token)
    return [s for s in segments if s]


def speech_bounds(tokens: Sequence[int], vocab: Vocabulary) -> tuple[int, int] | None:
    """First and last timestamp of a timestamped decode (20 ms steps), if it has two."""
    stamps = [t - vocab.timestamp_begin for t in tokens if t >= vocab.timestamp_begin]
    return (stamps[0], stamps[-1]) if len(stamps) >= 2 and stamps[-1] > stamps[0] else None


def word_timings(
    model: Any,
    vocab: Vocabulary,
    encoded: Encoded,
    text: list[int],
    bounds: tuple[int, int] | None = None,
) -> list[Word]:
    """Words of ``text`` (tokens of one utterance) with start/end ms and probability, from
    one cross-attention alignment on the utterance's encoder output.

    A word starts at a token whose text begins with a space (the first token too);
    tokens that are only punctuation stay with the word before. A token's time is where the
    alignment path first reaches it; a word ends where the token after it starts. The path
    starts at frame 0 and reaches the end-of-text token late, so the first word would cover
    the leading silence and the last one the trailing silence: the last word ends at the
    decode's last timestamp (``bounds``, :func:`speech_bounds`) at the latest, the first
    word lasts at most the median word length.
    """
    if not text:
        return []
    result = model.model.align(
        encoded.output,
        list(vocab.sot_sequence),
        [[*text, vocab.eot]],
        encoded.content_frames,
    )[0]
    starts = [-1] * (len(text) + 1)
    for text_index, time_index in result.alignments:
        if 0 <= text_index <= len(text) and starts[text_index] < 0:
            starts[text_index] = int(time_index)
    last = encoded.content_frames // 2
    for i in range(len(starts) - 1, -1, -1):  # tokens the path skipped take the next time
        if starts[i] < 0:
            starts[i] = starts[i + 1] if i + 1 < len(starts) else last
    probs = [float(p) for p in result.text_token_probs]
    pieces = [str(vocab.tokenizer.decode([t])) for t in text]
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if groups and (not piece.startswith(" ") or not any(c.isalnum() for c in piece)):
            groups[-1].append(i)  # a word piece or punctuation: same word
        else:
            groups.append([i])
    spans = [(g, starts[g[0]], max(starts[g[-1] + 1], starts[g[0]])) for g in groups]
    if bounds is not None:
        g, start, end = spans[-1]
        spans[-1] = (g, start, max(min(end, bounds[1]), start))
    # tiny.en mostly opens with <|0.00|> whatever the lead-in, so the first word gets at
    # most the median word length instead.
    lengths = sorted(end - start for _, start, end in spans if end > start)
    if len(spans) > 1 and lengths:
        g, start, end = spans[0]
        spans[0] = (g, max(start, end - lengths[len(lengths) // 2]), end)
    words: list[Word] = []
    ms = 1000 // ENCODER_FRAMES_PER_SECOND
    for g, start, end in spans:
        label = "".join(pieces[i] for i in g).strip()
        if not label:
            continue
        prob = sum(probs[i] for i in g if i < len(probs)) / len(g)
        words.append(Word(label, start * ms, end * ms, round(prob, 3)))
    return words
