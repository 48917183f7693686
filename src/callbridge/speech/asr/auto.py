"""The ``auto`` and ``fused`` engines: the recognition path chosen per request (decision 045).

* ``auto`` (what ``/bots`` runs): Whisper for every request — free transcription and every
  grammar, with the grammar's hints and restricted pass
  (:meth:`WhisperRecognizer.transcribe_for`). Measured on the H2B benchmark it is the path
  that meets the capacity target: the fused path costs about twice the CPU per grammar
  recognition for one more correct fixture of 24 (decision 045).
* spelled codes (both engines): Whisper reads the code, then a PocketSphinx search re-chooses
  the symbols Whisper confuses (letter A / "eight") when the code has one
  (``SphinxRecognizer.check_codes``, decision 047): one short PocketSphinx decode in a worker
  process, only for those utterances; ``check_codes=False`` leaves spelled codes to Whisper.
* ``fused``: the same, except that grammars with a JSGF form (digits, boolean, keywords,
  spelled codes, …) go to the PocketSphinx grammar search cross-checked by the same Whisper
  recognizer (``SphinxRecognizer(verifier=…)``, decisions 040 and 043) — what
  ``benchmarks/speech_accuracy.py`` measures as the grammar engine.

Both share one :class:`WhisperRecognizer`, so all Whisper decodes meet in one queue and are
batched together. Word timings are off by default: H2B results carry utterance times only,
and alignment is one more decoder pass per final.
"""

from __future__ import annotations

from pathlib import Path

from callbridge.speech.asr.base import RecognitionSession, Recognizer, SessionOptions
from callbridge.speech.asr.sphinx import WHISPER_GRAMMARS, SphinxRecognizer
from callbridge.speech.asr.whisper import WhisperRecognizer
from callbridge.speech.grammars.base import Grammar

__all__ = ["AutoRecognizer", "FusedRecognizer"]


class AutoRecognizer(Recognizer):
    """Whisper for every request; with ``fused``, PocketSphinx + Whisper for grammars that
    have a JSGF form."""

    name = "auto"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        fused: bool = False,
        word_timings: bool = False,
        whisper: WhisperRecognizer | None = None,
        sphinx: SphinxRecognizer | None = None,
        check_codes: bool = True,
    ) -> None:
        self.whisper = whisper or WhisperRecognizer(model_dir, word_timings=word_timings)
        #: Route JSGF grammars through PocketSphinx + the Whisper cross-check.
        self.fused = fused
        self.sphinx = (sphinx or SphinxRecognizer(verifier=self.whisper)) if fused else None
        #: Spelled codes: Whisper, then PocketSphinx on the confusable symbols (``None``: off).
        #: Its worker process starts with the first spelled code (``auto``) or with
        #: :meth:`start` (``fused``, the same recognizer as :attr:`sphinx`).
        self.codes: SphinxRecognizer | None = None
        if check_codes:
            self.codes = self.sphinx or SphinxRecognizer(verifier=self.whisper)

    def _engine_for(self, grammar: Grammar | None, language: str) -> Recognizer:
        if self.codes is not None and grammar is not None and grammar.type in WHISPER_GRAMMARS:
            return self.codes
        if (
            self.sphinx is not None
            and grammar is not None
            and self.sphinx.supports(grammar, language)
        ):
            return self.sphinx
        return self.whisper

    def supports(self, grammar: Grammar | None, language: str = "en-US") -> bool:
        return self.whisper.supports(grammar, language)

    async def start(self) -> None:
        await self.whisper.start()
        if self.sphinx is not None:
            await self.sphinx.start()

    async def aclose(self) -> None:
        if self.codes is not None and self.codes is not self.sphinx:
            await self.codes.aclose()
        if self.sphinx is not None:
            await self.sphinx.aclose()
        await self.whisper.aclose()

    def open_session(self, options: SessionOptions | None = None) -> RecognitionSession:
        options = options or SessionOptions()
        return self._engine_for(options.grammar, options.language).open_session(options)


class FusedRecognizer(AutoRecognizer):
    """:class:`AutoRecognizer` with PocketSphinx fused in for JSGF grammars."""

    name = "fused"

    def __init__(self, model_dir: str | Path | None = None, *, word_timings: bool = False) -> None:
        super().__init__(model_dir, fused=True, word_timings=word_timings)
