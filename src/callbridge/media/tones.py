"""Pure-tone generation in the internal PCM16 format.

Used for the ``beep`` flow action (:data:`BEEP_FREQ_HZ` for :data:`BEEP_DURATION_MS`, the
customary 1 kHz test tone of ITU-T O.41/G.712 measurements) and by tests as a known signal.

Levels are in dBFS relative to a full-scale *sine* (peak 32767 = 0 dBFS), so a -10 dBFS tone
has a peak of ``32767 * 10**(-10/20) ≈ 10362``. :class:`ToneGenerator` keeps its phase
between calls, so a tone produced frame by frame has no discontinuity (click) at frame edges.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from callbridge.media.constants import SAMPLE_RATE

__all__ = ["BEEP_DURATION_MS", "BEEP_FREQ_HZ", "ToneGenerator", "beep", "tone"]

#: Frequency of the ``beep`` action.
BEEP_FREQ_HZ: Final = 1000.0
#: Duration of the ``beep`` action.
BEEP_DURATION_MS: Final = 250
#: Peak amplitude of a 0 dBFS sine.
_FULL_SCALE: Final = 32767
_TWO_PI: Final = 2.0 * math.pi


class ToneGenerator:
    """A phase-continuous sine generator.

    ``read(samples)`` returns the next ``samples`` samples as PCM16 bytes; successive reads
    continue the same waveform. Frequency must lie in ``(0, sample_rate / 2)`` (Nyquist) and
    the level must be ``<= 0`` dBFS.
    """

    __slots__ = ("_amplitude", "_freq_hz", "_phase", "_sample_rate")

    def __init__(
        self,
        freq_hz: float,
        amplitude_dbfs: float = -10.0,
        *,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if not 0.0 < freq_hz < sample_rate / 2:
            raise ValueError(
                f"freq_hz must be within (0, {sample_rate / 2:g}) Hz (Nyquist), got {freq_hz}"
            )
        if not amplitude_dbfs <= 0.0:  # also rejects NaN
            raise ValueError(f"amplitude_dbfs must be <= 0, got {amplitude_dbfs}")
        self._freq_hz = float(freq_hz)
        self._sample_rate = sample_rate
        self._amplitude = _FULL_SCALE * 10.0 ** (amplitude_dbfs / 20.0)
        self._phase = 0.0  # radians, kept in [0, 2π) so precision does not decay over hours

    @property
    def freq_hz(self) -> float:
        """Tone frequency in Hz."""
        return self._freq_hz

    def read(self, samples: int) -> bytes:
        """Return the next ``samples`` samples of the tone as PCM16 little-endian bytes."""
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        step = _TWO_PI * self._freq_hz / self._sample_rate
        phases = self._phase + step * np.arange(samples, dtype=np.float64)
        self._phase = (self._phase + step * samples) % _TWO_PI
        wave: npt.NDArray[np.float64] = np.rint(self._amplitude * np.sin(phases))
        return wave.astype("<i2").tobytes()

    def read_ms(self, duration_ms: float) -> bytes:
        """Return the next ``duration_ms`` milliseconds (rounded down to whole samples)."""
        if duration_ms < 0:
            raise ValueError(f"duration_ms must be >= 0, got {duration_ms}")
        return self.read(int(self._sample_rate * duration_ms / 1000))


def tone(freq_hz: float, duration_ms: float, amplitude_dbfs: float = -10.0) -> bytes:
    """Return ``duration_ms`` of a ``freq_hz`` sine at ``amplitude_dbfs`` as 8 kHz PCM16.

    The byte count is ``bytes_for_ms(duration_ms)`` (whole samples, rounded down).
    """
    return ToneGenerator(freq_hz, amplitude_dbfs).read_ms(duration_ms)


def beep() -> bytes:
    """The ``beep`` action's audio: 1 kHz for 250 ms at -10 dBFS."""
    return tone(BEEP_FREQ_HZ, BEEP_DURATION_MS)
