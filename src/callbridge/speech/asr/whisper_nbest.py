"""Candidate scoring on a loaded faster-whisper model (decision 046).

A grammar with a closed set of answers (yes/no, keywords) can ask Whisper how likely each
answer is for an utterance, instead of only reading what greedy decoding wrote: the
candidates are *teacher-forced* through the decoder — one batched decoder pass over the
utterance's encoder output, each candidate a forced prefix — and each gets the sum of its
tokens' log-probabilities plus that of the end of text. The first candidate is the free
reading, so the caller compares like with like (same prompt, same audio window).

The job runs in the Whisper worker thread that holds the model (``WhisperJob.candidates``
dispatches here from ``_WhisperModel.run_batch``) on the utterance's encoder output, which the
worker keeps from the free decode of the same audio (decision 045): scoring costs one
batched decoder pass, no encoder pass. Nothing is sampled, so results are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from callbridge.speech.asr.base import Alternative, DecodeResult
from callbridge.speech.asr.whisper_ct2 import MAX_CONTEXT, Encoded, Vocabulary

__all__ = ["MAX_CANDIDATES", "CandidateScores", "score_candidates"]

#: Candidates scored in one job (a decoder batch); more are ignored.
MAX_CANDIDATES: Final = 32
#: Mel frames after the audio the scoring decoder still sees (1 s).
SCORE_MARGIN_FRAMES: Final = 100
#: Candidates per ``generate`` call (each returns its full-vocabulary logits per step).
SCORE_BATCH: Final = 12
#: Extra decoder steps allowed past the longest candidate (see ``score_candidates``).
BOUND_SLACK: Final = 8
#: Longest candidate in tokens.
MAX_CANDIDATE_TOKENS: Final = 48


@dataclass(frozen=True, slots=True)
class CandidateScores(DecodeResult):
    """The scored candidates of a job, in the job's order: ``scores[i]`` is the natural-log
    probability of ``candidates[i]`` followed by the end of text (``-inf`` when it could not
    be scored). ``transcript`` is the best-scoring candidate."""

    candidates: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()


def _log_softmax(logits: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Row-wise log-softmax (suppressed tokens carry the lowest float as their logit)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return np.asarray(x - np.log(np.exp(x).sum(axis=-1, keepdims=True)))


def _score_batch(
    model: Any,
    vocab: Vocabulary,
    output: np.ndarray[Any, Any],
    prompt: list[int],
    texts: list[list[int]],
    chunk: list[int],
) -> list[float]:
    """Scores of ``texts[i]`` for ``i`` in ``chunk``, in one ``generate`` call."""
    import ctranslate2  # type: ignore[import-untyped]

    batch = np.ascontiguousarray(np.repeat(output, len(chunk), axis=0))
    longest = max(len(texts[i]) for i in chunk)
    results = model.model.generate(
        ctranslate2.StorageView.from_array(batch),
        [prompt + texts[i] for i in chunk],
        beam_size=1,
        # CTranslate2 counts this bound from a point inside the prompt: a few steps of slack
        # keep the longest candidate and its end of text inside it (measured).
        max_length=min(MAX_CONTEXT, len(prompt) + longest + BOUND_SLACK),
        return_logits_vocab=True,
        suppress_blank=False,
    )
    del batch  # the StorageView borrowed its memory until the call returned
    scores: list[float] = []
    for i, result in zip(chunk, results, strict=True):
        steps = result.logits[0]  # one row per position after the start sequence
        targets = [*texts[i], vocab.eot]
        if len(steps) < len(targets):
            scores.append(-math.inf)  # the decoder stopped inside the candidate
            continue
        rows = _log_softmax(np.stack([np.asarray(steps[k]) for k in range(len(targets))]))
        scores.append(float(rows[np.arange(len(targets)), targets].sum()))
    return scores


def score_candidates(
    model: Any,
    vocab: Vocabulary,
    encoded: Encoded,
    prompt: Sequence[int],
    candidates: Sequence[str],
) -> CandidateScores:
    """Score ``candidates`` (texts) on an utterance's encoder output with the decoder
    ``prompt`` (without timestamps) on the faster-whisper ``model``; see the module
    docstring."""
    candidates = tuple(candidates[:MAX_CANDIDATES])
    tokenizer = vocab.tokenizer
    texts = [list(tokenizer.encode(" " + c.strip()))[:MAX_CANDIDATE_TOKENS] for c in candidates]
    usable = [i for i, t in enumerate(texts) if t]
    scores = [-math.inf] * len(candidates)
    if usable:
        prompt = list(prompt)
        # The decoder attends to the audio and 1 s after it, not to the whole window: each
        # candidate's cross-attention costs in proportion to the frames it sees.
        frames = min(encoded.window, encoded.content_frames + SCORE_MARGIN_FRAMES) // 2
        output = np.asarray(encoded.output)[:, :frames]
        for start in range(0, len(usable), SCORE_BATCH):
            chunk = usable[start : start + SCORE_BATCH]
            batch = _score_batch(model, vocab, output, prompt, texts, chunk)
            for i, score in zip(chunk, batch, strict=True):
                scores[i] = score
    best = max(range(len(candidates)), key=lambda i: scores[i], default=None)
    if best is None or not math.isfinite(scores[best]):
        return CandidateScores("", 0.0, candidates=candidates, scores=tuple(scores))
    nbest = tuple(
        Alternative(candidates[i], round(math.exp(scores[i] / (len(texts[i]) + 1)), 3))
        for i in sorted(range(len(candidates)), key=lambda i: -scores[i])
        if math.isfinite(scores[i])
    )
    return CandidateScores(
        candidates[best],
        nbest[0].confidence,
        (),
        nbest,
        candidates=candidates,
        scores=tuple(scores),
    )
