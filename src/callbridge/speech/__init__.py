"""Speech engines: streaming recognition (:mod:`.asr`), synthesis (:mod:`.tts`) and grammars.

The package itself depends only on callbridge's core requirements. Engine modules import their
engine packages lazily (on first use), so a deployment without the ``speech`` extra still
imports everything here and gets a clear :class:`EngineUnavailable` when it asks for an engine.
"""

from __future__ import annotations

__all__ = ["EngineUnavailable"]


class EngineUnavailable(RuntimeError):
    """An engine's package or model is not installed (install the ``speech`` extra)."""
