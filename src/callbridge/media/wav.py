"""WAV file import/export in callbridge's internal format.

Reading accepts the RIFF/WAVE files people actually upload for prompts and hold music —
PCM 8/16/24/32-bit, IEEE float 32/64-bit, G.711 A-law/µ-law (format tags 6/7, Microsoft
"Multimedia Programming Interface and Data Specifications 1.0" §"WAVE Form"), plain or in a
``WAVE_FORMAT_EXTENSIBLE`` wrapper, mono or multichannel, at any rate in
:data:`~callbridge.media.resample.SUPPORTED_RATES` — and converts it to 8 kHz mono PCM16:
channels are averaged, G.711 is expanded with :mod:`.g711`, and other rates are converted with
the offline-quality (``"HQ"``) :class:`~callbridge.media.resample.Resampler`.

The reader parses the RIFF chunks itself because the standard library's :mod:`wave` (3.11)
refuses everything but integer PCM (no G.711, no float, no extensible header). Writing uses
:mod:`wave`, which produces canonical 44-byte-header PCM files.

Unsupported or corrupt input raises :class:`WavFormatError` with the reason.
"""

from __future__ import annotations

import io
import os
import struct
import wave
from dataclasses import dataclass
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from callbridge.media.constants import BYTES_PER_SAMPLE, SAMPLE_RATE
from callbridge.media.g711 import alaw_decode, ulaw_decode
from callbridge.media.resample import SUPPORTED_RATES, Resampler

__all__ = [
    "WavFormatError",
    "WavInfo",
    "decode_wav",
    "encode_wav",
    "parse_wav",
    "read_wav",
    "write_wav",
]

WAVE_FORMAT_PCM: Final = 0x0001
WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003
WAVE_FORMAT_ALAW: Final = 0x0006
WAVE_FORMAT_MULAW: Final = 0x0007
WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE

_RIFF_HEADER: Final = struct.Struct("<4sI4s")
_CHUNK_HEADER: Final = struct.Struct("<4sI")
_FMT: Final = struct.Struct("<HHIIHH")
#: Offset of the SubFormat GUID inside an extensible ``fmt `` chunk; its first two bytes
#: are the actual format tag.
_EXTENSIBLE_SUBFORMAT_OFFSET: Final = 24
_EXTENSIBLE_MIN_SIZE: Final = 40
_MAX_CHANNELS: Final = 32
_INT16_MAX: Final = 32767

_SUPPORTED_BITS: Final = {
    WAVE_FORMAT_PCM: (8, 16, 24, 32),
    WAVE_FORMAT_IEEE_FLOAT: (32, 64),
    WAVE_FORMAT_ALAW: (8,),
    WAVE_FORMAT_MULAW: (8,),
}


class WavFormatError(ValueError):
    """The input is not a WAV file callbridge can use (corrupt, or an unsupported format)."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    """The format of a parsed WAV file."""

    format_tag: int
    channels: int
    sample_rate: int
    bits_per_sample: int
    frames: int

    @property
    def duration_seconds(self) -> float:
        """Length of the audio in seconds."""
        return self.frames / self.sample_rate


def parse_wav(data: bytes) -> tuple[WavInfo, bytes]:
    """Validate a WAV image and return its format and raw sample data (whole blocks only)."""
    if len(data) < _RIFF_HEADER.size:
        raise WavFormatError("not a WAV file: shorter than a RIFF header")
    riff, _, wave_id = _RIFF_HEADER.unpack_from(data)
    if riff != b"RIFF" or wave_id != b"WAVE":
        raise WavFormatError("not a WAV file: missing RIFF/WAVE signature")
    fmt: bytes | None = None
    samples: bytes | None = None
    pos = _RIFF_HEADER.size
    while pos + _CHUNK_HEADER.size <= len(data):
        chunk_id, size = _CHUNK_HEADER.unpack_from(data, pos)
        body = data[pos + _CHUNK_HEADER.size : pos + _CHUNK_HEADER.size + size]
        if chunk_id == b"fmt ":
            if len(body) < size:
                raise WavFormatError("corrupt WAV file: truncated fmt chunk")
            fmt = body
        elif chunk_id == b"data":
            # Streaming writers may leave the size at 0 or 0xFFFFFFFF; a truncated data chunk
            # is read as far as it goes (whole blocks only, trimmed below).
            samples = body if size else data[pos + _CHUNK_HEADER.size :]
            break
        pos += _CHUNK_HEADER.size + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None:
        raise WavFormatError("corrupt WAV file: no fmt chunk before the data")
    if samples is None:
        raise WavFormatError("corrupt WAV file: no data chunk")
    if len(fmt) < _FMT.size:
        raise WavFormatError("corrupt WAV file: fmt chunk too short")
    tag, channels, rate, _, block_align, bits = _FMT.unpack_from(fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < _EXTENSIBLE_MIN_SIZE:
            raise WavFormatError("corrupt WAV file: extensible fmt chunk too short")
        (tag,) = struct.unpack_from("<H", fmt, _EXTENSIBLE_SUBFORMAT_OFFSET)
    if tag not in _SUPPORTED_BITS:
        raise WavFormatError(f"unsupported WAV format tag 0x{tag:04x}")
    if bits not in _SUPPORTED_BITS[tag]:
        raise WavFormatError(f"unsupported {bits}-bit samples for WAV format tag 0x{tag:04x}")
    if not 1 <= channels <= _MAX_CHANNELS:
        raise WavFormatError(f"unsupported channel count {channels}")
    if rate not in SUPPORTED_RATES:
        raise WavFormatError(
            f"unsupported sample rate {rate} Hz; supported: {sorted(SUPPORTED_RATES)}"
        )
    if block_align != channels * bits // 8:
        raise WavFormatError(
            f"corrupt WAV file: block align {block_align} != {channels} channels x {bits} bits"
        )
    usable = len(samples) - len(samples) % block_align
    info = WavInfo(tag, channels, rate, bits, usable // block_align)
    return info, samples[:usable]


def _to_int16(info: WavInfo, raw: bytes) -> npt.NDArray[np.int16]:
    """Raw sample data → int16 array of shape (frames, channels)."""
    tag, bits = info.format_tag, info.bits_per_sample
    flat: npt.NDArray[np.int16]
    if tag == WAVE_FORMAT_MULAW:
        flat = np.frombuffer(ulaw_decode(raw), dtype="<i2")
    elif tag == WAVE_FORMAT_ALAW:
        flat = np.frombuffer(alaw_decode(raw), dtype="<i2")
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        floats = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8")
        scaled = np.rint(np.clip(np.nan_to_num(floats), -1.0, 1.0) * _INT16_MAX)
        flat = scaled.astype("<i2")
    elif bits == 8:
        # 8-bit WAV PCM is unsigned with a 128 offset.
        flat = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype("<i2")
    elif bits == 16:
        flat = np.frombuffer(raw, dtype="<i2")
    elif bits == 24:
        # Keep the two most significant bytes of each little-endian 24-bit sample.
        triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        flat = np.ascontiguousarray(triplets[:, 1:]).view("<i2").reshape(-1)
    else:
        flat = (np.frombuffer(raw, dtype="<i4") >> 16).astype("<i2")
    return flat.reshape(-1, info.channels)


def decode_wav(data: bytes) -> bytes:
    """Convert a WAV image (bytes) to 8 kHz mono PCM16 little-endian."""
    info, raw = parse_wav(data)
    frames = _to_int16(info, raw)
    if info.channels == 1:
        mono = frames.reshape(-1)
    else:
        # Average the channels (int32 to avoid overflow); rounding toward -inf is inaudible.
        mono = (frames.astype(np.int32).sum(axis=1) // info.channels).astype("<i2")
    pcm = mono.astype("<i2", copy=False).tobytes()
    if info.sample_rate == SAMPLE_RATE:
        return pcm
    resampler = Resampler(info.sample_rate, SAMPLE_RATE, quality="HQ")
    return resampler.process(pcm) + resampler.flush()


def read_wav(source: str | os.PathLike[str] | BinaryIO) -> bytes:
    """Read a WAV file (path or binary file object) as 8 kHz mono PCM16 little-endian."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            data = fh.read()
    else:
        data = source.read()
    return decode_wav(data)


def write_wav(dest: str | os.PathLike[str] | BinaryIO, pcm: bytes) -> None:
    """Write 8 kHz mono PCM16 little-endian ``pcm`` as a canonical PCM WAV file."""
    if len(pcm) % BYTES_PER_SAMPLE:
        raise ValueError(f"PCM16 data must hold whole samples, got {len(pcm)} bytes")
    target: str | BinaryIO = os.fspath(dest) if isinstance(dest, str | os.PathLike) else dest
    with wave.open(target, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(BYTES_PER_SAMPLE)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)


class WavWriter:
    """Streams 8 kHz PCM16 into a WAV file as it is produced (recordings of live calls).

    Mono by default; ``channels=2`` takes interleaved stereo (left, right per sample). The
    header's sizes are patched on :meth:`close` (the stdlib ``wave`` writer does that), so a
    recording of any length never sits in memory. Closing twice is harmless.
    """

    def __init__(self, dest: str | os.PathLike[str], *, channels: int = 1) -> None:
        if channels not in (1, 2):
            raise ValueError(f"WavWriter writes 1 or 2 channels, not {channels}")
        self.path = os.fspath(dest)
        self.channels = channels
        self._w: wave.Wave_write | None = wave.open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._w.setnchannels(channels)
        self._w.setsampwidth(BYTES_PER_SAMPLE)
        self._w.setframerate(SAMPLE_RATE)
        self.bytes_written = 0

    def write(self, pcm: bytes) -> None:
        """Append whole PCM16 samples (whole sample frames: one sample per channel)."""
        if self._w is None:
            raise ValueError("write to a closed WavWriter")
        if len(pcm) % (BYTES_PER_SAMPLE * self.channels):
            raise ValueError(
                f"PCM16 data must hold whole samples ({self.channels} channel(s)), "
                f"got {len(pcm)} bytes"
            )
        self._w.writeframesraw(pcm)
        self.bytes_written += len(pcm)

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None

    @property
    def closed(self) -> bool:
        return self._w is None


def encode_wav(pcm: bytes) -> bytes:
    """Return ``pcm`` (8 kHz mono PCM16) as the bytes of a WAV file."""
    buf = io.BytesIO()
    write_wav(buf, pcm)
    return buf.getvalue()
