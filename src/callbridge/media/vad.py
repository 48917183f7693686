"""Voice activity detection over 20 ms PCM16 frames, and speech segmentation.

Two detectors share the :class:`VoiceActivityDetector` protocol:

* :class:`EnergyVAD` — frame RMS level in dBFS against a fixed threshold. Cheap and
  predictable; right for "is anyone making sound at all" decisions (silence detection,
  recording trimming), wrong for noisy lines.
* :class:`WebRtcVAD` — the Gaussian-mixture detector of the WebRTC project (via the
  ``webrtcvad`` module of the ``webrtcvad-wheels`` distribution), which models speech and
  noise spectra in six sub-bands and tolerates stationary background noise.

:class:`SpeechSegmenter` turns per-frame decisions into ``speech_started``/``speech_ended``
events with hysteresis: speech must persist for ``start_frames`` consecutive frames to start a
segment (rejecting clicks), and silence must persist for ``end_frames`` frames to end it (a
*hangover* that bridges the short pauses between words — the same idea as the hangover of
ITU-T G.729 Annex B's VAD).

dBFS convention: 0 dBFS is the RMS of a full-scale square wave (32768), so a full-scale sine
measures about -3 dBFS and digital silence is ``-inf``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

import numpy as np

from callbridge.media.constants import BYTES_PER_SAMPLE, FRAME_MS, SAMPLE_RATE

with warnings.catch_warnings():
    # Some builds of webrtcvad import pkg_resources, which warns about its own deprecation.
    warnings.simplefilter("ignore")
    import webrtcvad

__all__ = [
    "EnergyVAD",
    "SpeechEvent",
    "SpeechSegmenter",
    "VoiceActivityDetector",
    "WebRtcVAD",
    "frame_dbfs",
]

#: Reference level of 0 dBFS (RMS of a full-scale square wave).
_FULL_SCALE: Final = 32768.0
#: Frame durations the WebRTC VAD accepts.
_WEBRTC_FRAME_MS: Final = (10, 20, 30)


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """Classifies one PCM16 8 kHz frame as speech or not."""

    def is_speech(self, frame: bytes) -> bool:
        """True if ``frame`` contains speech."""
        ...

    def reset(self) -> None:
        """Forget any adaptation state (new stream)."""
        ...


def frame_dbfs(frame: bytes) -> float:
    """RMS level of a PCM16 buffer in dBFS (``-inf`` for digital silence or an empty buffer)."""
    if len(frame) % BYTES_PER_SAMPLE:
        raise ValueError(f"PCM16 input must hold whole samples, got {len(frame)} bytes")
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    if not samples.size:
        return -math.inf
    power = float(np.dot(samples, samples)) / samples.size
    if power == 0.0:
        return -math.inf
    return 10.0 * math.log10(power / (_FULL_SCALE * _FULL_SCALE))


class EnergyVAD:
    """Speech when the frame's RMS level is at or above ``threshold_dbfs``. Stateless."""

    __slots__ = ("_threshold",)

    def __init__(self, threshold_dbfs: float = -45.0) -> None:
        if not threshold_dbfs <= 0.0:
            raise ValueError(f"threshold_dbfs must be <= 0, got {threshold_dbfs}")
        self._threshold = threshold_dbfs

    @property
    def threshold_dbfs(self) -> float:
        """The decision threshold."""
        return self._threshold

    def is_speech(self, frame: bytes) -> bool:
        return frame_dbfs(frame) >= self._threshold

    def reset(self) -> None:
        """Nothing to reset: the detector is stateless."""


class WebRtcVAD:
    """The WebRTC VAD at ``aggressiveness`` 0 (least) to 3 (most eager to call non-speech).

    Frames must be 10, 20 or 30 ms of 8 kHz PCM16 (the internal 20 ms frame qualifies);
    other sizes raise :class:`ValueError`.
    """

    __slots__ = ("_aggressiveness", "_vad")

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self._aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)

    @property
    def aggressiveness(self) -> int:
        """The configured mode (0..3)."""
        return self._aggressiveness

    def is_speech(self, frame: bytes) -> bool:
        if len(frame) not in _VALID_WEBRTC_SIZES:
            raise ValueError(
                f"WebRTC VAD needs 10/20/30 ms frames of 8 kHz PCM16 "
                f"({sorted(_VALID_WEBRTC_SIZES)} bytes), got {len(frame)} bytes"
            )
        return bool(self._vad.is_speech(frame, SAMPLE_RATE))

    def reset(self) -> None:
        # The C detector adapts its noise model; a fresh instance forgets it.
        self._vad = webrtcvad.Vad(self._aggressiveness)


_VALID_WEBRTC_SIZES: Final = frozenset(
    SAMPLE_RATE * ms // 1000 * BYTES_PER_SAMPLE for ms in _WEBRTC_FRAME_MS
)


@dataclass(frozen=True, slots=True)
class SpeechEvent:
    """A segment boundary.

    ``frame_index`` is the index (0-based count of frames fed since the last reset) of the
    first speech frame of the segment for ``speech_started``, and of the first non-speech
    frame after it for ``speech_ended``. ``time_ms`` is the same position in milliseconds.
    """

    kind: Literal["speech_started", "speech_ended"]
    frame_index: int

    @property
    def time_ms(self) -> int:
        """Position of the boundary from the start of the stream, in milliseconds."""
        return self.frame_index * FRAME_MS


class SpeechSegmenter:
    """Hysteresis over per-frame VAD decisions.

    * A segment starts after ``start_frames`` consecutive speech frames; the event is
      reported on the frame that completes the run and points back at the run's first frame.
    * It ends after ``end_frames`` consecutive non-speech frames; the event is reported on
      the frame that completes that run and points at its first frame.
    * :meth:`finish` ends an open segment at the end of the stream.
    """

    __slots__ = (
        "_end_frames",
        "_in_speech",
        "_index",
        "_run",
        "_run_start",
        "_start_frames",
        "_vad",
    )

    def __init__(
        self, vad: VoiceActivityDetector, start_frames: int = 3, end_frames: int = 15
    ) -> None:
        if start_frames < 1 or end_frames < 1:
            raise ValueError("start_frames and end_frames must be >= 1")
        self._vad = vad
        self._start_frames = start_frames
        self._end_frames = end_frames
        self._index = 0
        self._in_speech = False
        self._run = 0  # length of the current run of frames contradicting the state
        self._run_start = 0

    @property
    def in_speech(self) -> bool:
        """True inside a speech segment."""
        return self._in_speech

    @property
    def frames_seen(self) -> int:
        """Frames fed since creation or the last reset."""
        return self._index

    def feed(self, frame: bytes) -> SpeechEvent | None:
        """Classify ``frame`` and return the boundary event it completes, if any."""
        index = self._index
        self._index += 1
        speech = self._vad.is_speech(frame)
        if speech != self._in_speech:
            if self._run == 0:
                self._run_start = index
            self._run += 1
            needed = self._end_frames if self._in_speech else self._start_frames
            if self._run >= needed:
                self._in_speech = speech
                self._run = 0
                kind: Literal["speech_started", "speech_ended"] = (
                    "speech_started" if speech else "speech_ended"
                )
                return SpeechEvent(kind, self._run_start)
        else:
            self._run = 0  # the contradicting run was interrupted
        return None

    def finish(self) -> SpeechEvent | None:
        """End of stream: close an open segment at the current position."""
        if not self._in_speech:
            return None
        self._in_speech = False
        self._run = 0
        return SpeechEvent("speech_ended", self._index)

    def reset(self) -> None:
        """Start over (new stream): state, counters and the detector."""
        self._index = 0
        self._in_speech = False
        self._run = 0
        self._run_start = 0
        self._vad.reset()
