"""callbridge.media: the sans-I/O media core.

Pure, synchronous building blocks for the per-frame media path of a call leg, all working on
the internal format of :mod:`callbridge.media.constants` (8 kHz mono PCM16, 20 ms frames).
None of them performs I/O (except :mod:`.wav`, which reads/writes files) or reads a clock:
the leg's clock owner drives them.
"""

from callbridge.media.assembler import FrameAssembler
from callbridge.media.clock import Clock, SystemClock, VirtualClock
from callbridge.media.constants import (
    BYTES_PER_SAMPLE,
    BYTES_PER_SECOND,
    FRAME_BYTES,
    FRAME_MS,
    FRAME_SECONDS,
    FRAMES_PER_SECOND,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SILENCE_FRAME,
    bytes_for_ms,
    ms_for_bytes,
)
from callbridge.media.frame import AudioFrame, silence
from callbridge.media.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)
from callbridge.media.jitter import JitterBuffer, JitterKind, JitterOutput, JitterStats
from callbridge.media.mixer import Mixer, mix
from callbridge.media.playout import (
    ClearResult,
    Mark,
    MarkStatus,
    PlayoutBuffer,
    PlayoutOverflow,
    PlayoutTick,
)
from callbridge.media.resample import QUALITIES, SUPPORTED_RATES, Resampler
from callbridge.media.tones import BEEP_DURATION_MS, BEEP_FREQ_HZ, ToneGenerator, beep, tone
from callbridge.media.vad import (
    EnergyVAD,
    SpeechEvent,
    SpeechSegmenter,
    VoiceActivityDetector,
    WebRtcVAD,
    frame_dbfs,
)
from callbridge.media.wav import (
    WavFormatError,
    WavInfo,
    WavWriter,
    decode_wav,
    encode_wav,
    parse_wav,
    read_wav,
    write_wav,
)

__all__ = [
    "ALAW_SILENCE",
    "BEEP_DURATION_MS",
    "BEEP_FREQ_HZ",
    "BYTES_PER_SAMPLE",
    "BYTES_PER_SECOND",
    "FRAMES_PER_SECOND",
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SECONDS",
    "QUALITIES",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "SILENCE_FRAME",
    "SUPPORTED_RATES",
    "ULAW_SILENCE",
    "AudioFrame",
    "ClearResult",
    "Clock",
    "EnergyVAD",
    "FrameAssembler",
    "JitterBuffer",
    "JitterKind",
    "JitterOutput",
    "JitterStats",
    "Mark",
    "MarkStatus",
    "Mixer",
    "PlayoutBuffer",
    "PlayoutOverflow",
    "PlayoutTick",
    "Resampler",
    "SpeechEvent",
    "SpeechSegmenter",
    "SystemClock",
    "ToneGenerator",
    "VirtualClock",
    "VoiceActivityDetector",
    "WavFormatError",
    "WavInfo",
    "WavWriter",
    "WebRtcVAD",
    "alaw_decode",
    "alaw_encode",
    "beep",
    "bytes_for_ms",
    "decode_wav",
    "encode_wav",
    "frame_dbfs",
    "mix",
    "ms_for_bytes",
    "parse_wav",
    "read_wav",
    "silence",
    "tone",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]
