"""Stream H2B: Allo-Media's voicebot recognition API over WebSocket (h2b.md), uhlive-compatible.

* :mod:`.protocol` — command parsing and event serialization (sans-I/O);
* :mod:`.params`, :mod:`.audio`, :mod:`.recognition` — parameters, codecs and the recognition
  life cycle on the audio clock;
* :mod:`.engine` — the per-connection session state machine;
* :mod:`.adapter` — the asyncio shell joining the engine to a speech :class:`Recognizer`;
* :mod:`.router` — the ``/bots`` WebSocket endpoint; :mod:`.accounting` — the session table.
"""

from __future__ import annotations

from callbridge.h2b.engine import H2BEngine, SessionRecord, SessionState
from callbridge.h2b.params import Params, RecognitionMode
from callbridge.h2b.protocol import (
    Command,
    CommandName,
    CompletionCause,
    EventName,
    H2BEvent,
    parse_command,
)

__all__ = [
    "Command",
    "CommandName",
    "CompletionCause",
    "EventName",
    "H2BEngine",
    "H2BEvent",
    "Params",
    "RecognitionMode",
    "SessionRecord",
    "SessionState",
    "parse_command",
]
