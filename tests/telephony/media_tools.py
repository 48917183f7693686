"""Media helpers for the telephony tests: RTP pcap files for sipp, tone frequency estimates.

The pcap is written here with callbridge's own RTP packet code and the classic libpcap format
(Ethernet + IPv4 + UDP), so sipp's ``play_pcap_audio`` can replay it; nothing is copied from
sipp's sample files.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from callbridge.media.g711 import ulaw_encode
from callbridge.media.tones import tone
from callbridge.rtp.dtmf import TelephoneEvent, event_for_digit
from callbridge.rtp.packet import RtpPacket

FRAME_MS = 20
SAMPLES_PER_FRAME = 160
PT_PCMU = 0
PT_EVENT = 101


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(payload: bytes, src_port: int, dst_port: int) -> bytes:
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    src = bytes([127, 0, 0, 1])
    dst = bytes([127, 0, 0, 1])
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    header = header[:10] + struct.pack("!H", _ip_checksum(header)) + header[12:]
    ethernet = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ethernet + header + udp


def write_pcap(path: Path, packets: Sequence[tuple[float, bytes]]) -> None:
    """A libpcap file (link type Ethernet) of UDP datagrams ``(seconds, rtp_bytes)``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    base = 1_700_000_000
    for at, payload in packets:
        frame = _frame(payload, 40000, 50000)
        seconds = base + int(at)
        micros = round((at - int(at)) * 1_000_000)
        out.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def rtp_tone_with_dtmf(
    freq_hz: float, digits: str, *, lead_ms: int = 600, gap_ms: int = 200, tail_ms: int = 600
) -> list[tuple[float, bytes]]:
    """PCMU RTP of a ``freq_hz`` tone, interrupted by RFC 4733 events for ``digits`` (each
    100 ms: start with the M bit, updates every 20 ms, three end packets, one timestamp)."""
    ssrc, seq, ts = 0x1234ABCD, 1000, 80_000
    packets: list[tuple[float, bytes]] = []
    at = 0.0
    pcm = tone(freq_hz, lead_ms + tail_ms + len(digits) * (gap_ms + 200) + 1000)
    offset = 0
    first = True

    def audio(ms: int) -> None:
        nonlocal seq, ts, at, offset, first
        for _ in range(ms // FRAME_MS):
            chunk = pcm[offset : offset + SAMPLES_PER_FRAME * 2]
            offset += SAMPLES_PER_FRAME * 2
            payload = ulaw_encode(chunk)
            packet = RtpPacket(PT_PCMU, seq % 65536, ts, ssrc, payload, marker=first)
            packets.append((at, packet.serialize()))
            first = False
            seq, ts, at = seq + 1, ts + SAMPLES_PER_FRAME, at + FRAME_MS / 1000

    audio(lead_ms)
    for digit in digits:
        event = event_for_digit(digit)
        start = ts
        frames = 5  # 100 ms
        for k in range(frames):
            duration = (k + 1) * SAMPLES_PER_FRAME
            end = k == frames - 1
            copies = 3 if end else 1
            for _ in range(copies):
                body = TelephoneEvent(event, end, 10, duration).pack()
                packet = RtpPacket(PT_EVENT, seq % 65536, start, ssrc, body, marker=k == 0)
                packets.append((at, packet.serialize()))
                seq += 1
            at += FRAME_MS / 1000
        ts = start + frames * SAMPLES_PER_FRAME
        audio(gap_ms)
    audio(tail_ms)
    return packets


def dominant_frequency(pcm: bytes, rate: int = 8000) -> float:
    """The strongest frequency of 16-bit little-endian mono PCM (Hann window, FFT peak)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size < 256:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    return float(peak * rate / samples.size)


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
