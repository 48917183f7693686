"""Streaming sample-rate conversion between the internal 8 kHz and wideband/TTS rates.

Wraps libsoxr's streaming resampler (``soxr.ResampleStream``) over PCM16 byte streams. Peers
speak 16 kHz (wideband, ITU-T G.722 / RTVBP ``L16/16000``), 22.05/24 kHz (typical TTS engines)
or 48 kHz (WebRTC/Opus, RFC 7587 §4.1); callbridge's internal format is 8 kHz
(:data:`~callbridge.media.constants.SAMPLE_RATE`).

State. A resampler's filter carries history between chunks, so **one instance serves exactly
one direction of one stream** (e.g. a leg needs one 8k→16k instance for its outbound and a
separate 16k→8k instance for its inbound audio). Sharing an instance between streams smears
one stream's tail into the other.

Latency, measured with libsoxr 0.5 (python-soxr 1.1) feeding 20 ms chunks
(``tests/media/test_media_resample.py`` asserts these bounds):

* ``"QQ"`` (quick cubic interpolation, the default for live calls): output is time-aligned
  with the input (a step or impulse lands at the same instant, shift < 0.1 ms) and at most
  0.25 ms of output is held back at any time on 8k↔16k/22.05k/48k; i.e. the added delay is
  well under 1 ms (the tests assert < 5 ms). QQ has no anti-alias low-pass filter; on
  downsampling, content above the 4 kHz Nyquist folds back, which is tolerable for speech
  whose energy is far below 4 kHz and for which telephony codecs band-limit anyway.
* ``"LQ"``/``"MQ"``/``"HQ"``/``"VHQ"`` (linear-phase FIR filters): output is still aligned,
  but the stream withholds output until its filter is primed and then emits in bursts — with
  ``"HQ"`` nothing comes out for the first ~100 ms of input and up to ~115 ms (8k↔16k) to
  ~175 ms (8k↔48k) is held back at any moment. That is unacceptable as per-frame delay on a
  live call, so the high qualities are for offline conversion (files, see :mod:`.wav`), where
  :meth:`Resampler.flush` drains the tail.

Byte handling. :meth:`Resampler.process` accepts any byte count: an odd trailing byte (half a
sample) is carried into the next call. :meth:`Resampler.flush` drains the filter and readies
the instance for a new stream; a dangling odd byte at the end of a stream is discarded.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import soxr

from callbridge.media.constants import BYTES_PER_SAMPLE, SAMPLE_RATE

__all__ = ["QUALITIES", "SUPPORTED_RATES", "Resampler"]

#: Sample rates accepted on either side (Hz).
SUPPORTED_RATES: Final = frozenset({SAMPLE_RATE, 11025, 16000, 22050, 24000, 32000, 44100, 48000})
#: libsoxr quality recipes, fastest/lowest-latency first.
QUALITIES: Final = ("QQ", "LQ", "MQ", "HQ", "VHQ")

_EMPTY: Final = np.zeros(0, dtype=np.int16)


class Resampler:
    """Stateful PCM16 mono resampler from ``in_rate`` to ``out_rate``.

    Contract:

    * Both rates must be in :data:`SUPPORTED_RATES` and ``quality`` in :data:`QUALITIES`,
      else :class:`ValueError`.
    * Equal rates pass audio through unchanged (only whole samples are emitted).
    * ``process(pcm)`` returns the output available so far (possibly empty for high
      qualities); ``flush()`` returns the remaining tail and resets the stream.
    * Over a whole stream, ``len(output samples) == round(len(input samples) * out/in)``
      within one sample.
    """

    __slots__ = ("_carry", "_in_rate", "_out_rate", "_quality", "_stream")

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "QQ") -> None:
        for name, rate in (("in_rate", in_rate), ("out_rate", out_rate)):
            if rate not in SUPPORTED_RATES:
                raise ValueError(
                    f"unsupported {name} {rate!r}; supported: {sorted(SUPPORTED_RATES)}"
                )
        if quality not in QUALITIES:
            raise ValueError(f"unknown quality {quality!r}; expected one of {QUALITIES}")
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._quality = quality
        self._carry = b""
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(
            self._in_rate, self._out_rate, 1, dtype="int16", quality=self._quality
        )

    @property
    def in_rate(self) -> int:
        """Input sample rate in Hz."""
        return self._in_rate

    @property
    def out_rate(self) -> int:
        """Output sample rate in Hz."""
        return self._out_rate

    @property
    def quality(self) -> str:
        """The libsoxr quality recipe in use."""
        return self._quality

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and audio is passed through unchanged."""
        return self._stream is None

    def process(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """Resample the next chunk of the stream; any byte count is accepted."""
        data = bytes(pcm)
        if self._carry:
            data = self._carry + data
        n = len(data)
        whole = n - n % BYTES_PER_SAMPLE
        self._carry = data[whole:]
        if not whole:
            return b""
        if self._stream is None:
            return data[:whole]
        samples = np.frombuffer(data, dtype="<i2", count=whole // BYTES_PER_SAMPLE)
        out = self._stream.resample_chunk(samples)
        return bytes(out.astype("<i2", copy=False).tobytes())

    def flush(self) -> bytes:
        """Drain the resampler's tail and reset it for a new stream."""
        self._carry = b""
        if self._stream is None:
            return b""
        out = self._stream.resample_chunk(_EMPTY, last=True)
        # soxr forbids feeding a stream after its last chunk: start a fresh one.
        self._stream = self._new_stream()
        return bytes(out.astype("<i2", copy=False).tobytes())

    def reset(self) -> None:
        """Forget all history (filter state and carried byte) without emitting anything."""
        self._carry = b""
        if self._stream is not None:
            self._stream = self._new_stream()
