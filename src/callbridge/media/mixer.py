"""Saturating mixer of PCM16 frames.

Mixing is a sample-wise sum of the producers' signals. Summing two full-scale int16 signals
overflows 16 bits, and wrap-around would turn a loud peak into a full-scale click of the
opposite sign, so the sum is accumulated in int32 and *saturated* (clipped) to the int16 range
— the behaviour of the saturating adders in ITU-T G.191's basic operators (``add``/``sature``).
No gain normalisation is applied: dividing by the number of producers would make every talker
quieter whenever someone else is merely connected (and silent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from callbridge.media.constants import BYTES_PER_SAMPLE, FRAME_BYTES, SILENCE_FRAME

__all__ = ["Mixer", "mix"]

_INT16_MIN: Final = np.int32(-32768)
_INT16_MAX: Final = np.int32(32767)


def _check_lengths(frames: Sequence[bytes]) -> int:
    n = len(frames[0])
    for f in frames:
        if len(f) != n:
            raise ValueError(f"cannot mix frames of different lengths ({n} and {len(f)} bytes)")
    if n % BYTES_PER_SAMPLE:
        raise ValueError(f"PCM16 frames must hold whole samples, got {n} bytes")
    return n


def mix(frames: Sequence[bytes]) -> bytes:
    """Return the saturating int16 sum of equal-length PCM16 frames.

    * An empty sequence yields one silence frame (``SILENCE_FRAME``).
    * A single frame is returned as-is (the same object, no copy).
    * Frames of digital silence are skipped (a ``memcmp``), so two producers of which one is
      idle cost nothing beyond the comparison.
    * Otherwise one numpy pass: int32 accumulate, saturate, cast to int16.

    Raises :class:`ValueError` on unequal or odd lengths.
    """
    count = len(frames)
    if count == 0:
        return SILENCE_FRAME
    if count == 1:
        return frames[0]
    n = _check_lengths(frames)
    silence = SILENCE_FRAME if n == FRAME_BYTES else bytes(n)
    live = [f for f in frames if f != silence]
    if len(live) <= 1:
        return live[0] if live else frames[0]
    acc: npt.NDArray[np.int32] = np.add(
        np.frombuffer(live[0], dtype="<i2"), np.frombuffer(live[1], dtype="<i2"), dtype=np.int32
    )
    for f in live[2:]:
        acc += np.frombuffer(f, dtype="<i2")
    _saturate(acc)
    return acc.astype("<i2").tobytes()


def _saturate(acc: npt.NDArray[np.int32]) -> None:
    """Clip ``acc`` to the int16 range in place.

    Two in-place ufuncs instead of ``np.clip``: same result, but ``np.clip``'s argument
    handling costs several microseconds per call on 160-sample frames.
    """
    np.maximum(acc, _INT16_MIN, out=acc)
    np.minimum(acc, _INT16_MAX, out=acc)


class Mixer:
    """A reusable mixer for frames of a fixed size, with a preallocated accumulator.

    Same semantics as :func:`mix`, minus the per-call allocation of the int32 accumulator.
    One instance per mixing point (it is not re-entrant).
    """

    __slots__ = ("_acc", "_frame_bytes", "_out", "_silence")

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0 or frame_bytes % BYTES_PER_SAMPLE:
            raise ValueError(f"frame_bytes must be a positive even number, got {frame_bytes}")
        self._frame_bytes = frame_bytes
        samples = frame_bytes // BYTES_PER_SAMPLE
        self._acc: npt.NDArray[np.int32] = np.zeros(samples, dtype=np.int32)
        self._out: npt.NDArray[np.int16] = np.zeros(samples, dtype="<i2")
        self._silence = bytes(frame_bytes)

    @property
    def frame_bytes(self) -> int:
        """Size of the frames this mixer accepts."""
        return self._frame_bytes

    def mix(self, frames: Sequence[bytes]) -> bytes:
        """Mix ``frames`` (each exactly ``frame_bytes`` long); see :func:`mix`."""
        size = self._frame_bytes
        for f in frames:
            if len(f) != size:
                raise ValueError(f"expected {size}-byte frames, got {len(f)} bytes")
        live = [f for f in frames if f != self._silence]
        if len(live) <= 1:
            return live[0] if live else self._silence
        acc = self._acc
        np.add(
            np.frombuffer(live[0], dtype="<i2"),
            np.frombuffer(live[1], dtype="<i2"),
            out=acc,
            dtype=np.int32,
        )
        for f in live[2:]:
            acc += np.frombuffer(f, dtype="<i2")
        _saturate(acc)
        np.copyto(self._out, acc, casting="unsafe")
        return self._out.tobytes()
