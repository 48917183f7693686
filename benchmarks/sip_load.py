"""SIP load: call setup rate and simultaneous answered echo calls on one core (issue 5).

``callbridge serve`` runs in a subprocess on loopback, pinned to core 1 (``taskset -c 1``) with
the flow ``answer`` + ``echo``; sipp (the load generator) and an RTP sink run on core 0.

1. **Setup rate**: sipp places ``--calls`` short calls (INVITE → 200 → ACK → 200 ms → BYE) at
   ``--rate`` per second; the figure is completed calls / (wall time − one call's hold), and
   every call must succeed (sipp's exit code).
2. **Simultaneous echo calls**: sipp opens ``--concurrent`` calls that stay up for ``--hold``
   seconds, with SDP pointing every call's media at one UDP sink (a separate process). The
   sink answers each packet with one of its own (same sequence number and timestamp, new
   SSRC) carrying a frame of speech-like audio — not the packet's own payload, which would be
   the silence callbridge starts with, echoed forever — so every call carries 50 packets/s of
   real G.711 audio each way through callbridge's decoder, jitter buffer, echo flow, encoder
   and clocked sender. The sink polls its socket (1 ms sleeps, never blocked in a receive:
   on loopback the sender would pay for waking it up) and takes the **kernel receive
   timestamp** (``SO_TIMESTAMPNS``) of every packet callbridge sent
   during the steady window; per stream, ``deviation = arrival − 20 ms × frame index`` minus
   its minimum is the send jitter; a packet more than one frame (20 ms) behind is **late**, a
   sequence gap is **lost**, a timestamp jump without a sequence gap is a frame the sender
   **skipped** after a stall (never sent, so neither late nor lost). CPU per call = the
   server's CPU time over the window (``/proc/<pid>/stat``) / window / calls.

Context printed with the figures, because other work on the machine moves them: the load
average, the time the server spent **runnable but waiting for a CPU** during the window
(``/proc/<pid>/schedstat``; lateness we cannot cause or cure), and the server's garbage
collector pauses in the window, by generation and duration (its ``/metrics``:
``callbridge_gc_pause_seconds``, decision 031).

Prints ``RESULT <figure>=<value> <unit> target<op><value> PASS|FAIL`` lines; bounded runtime
(about a minute with the defaults, ≤ 3 min).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- callbridge benchmark scenario: a call held for -d ms; media at [sink_port] -->
<scenario name="callbridge load">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "load" <sip:load@[local_ip]:[local_port]>;tag=[pid]lt[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:load@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=load 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 127.0.0.1
      t=0 0
      m=audio [sink_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "load" <sip:load@[local_ip]:[local_port]>;tag=[pid]lt[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "load" <sip:load@[local_ip]:[local_port]>;tag=[pid]lt[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""

FRAME = 0.020
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


def pinned(core: int, args: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return args
    return [taskset, "-c", str(core), *args]


def runqueue_wait_seconds(pid: int) -> float:
    """Time ``pid`` spent runnable but not running (``/proc/<pid>/schedstat``; 0 if absent)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def gc_pauses(http_port: int) -> dict[tuple[str, str], float]:
    """The server's cumulative ``callbridge_gc_pause_seconds`` buckets by (generation, le)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("callbridge_gc_pause_seconds_bucket{"):
            labels, value = line[len("callbridge_gc_pause_seconds_bucket{") :].split("} ")
            kv = dict(item.split("=", 1) for item in labels.split(","))
            out[(kv["generation"].strip('"'), kv["le"].strip('"'))] = float(value)
    return out


def describe_gc(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> str:
    """``gen0: 12 (≤1ms 10, ≤2ms 2), gen2: 1 (≤50ms 1)`` for the pauses between two scrapes."""
    if not after:
        return "not available (server without callbridge_gc_pause_seconds)"
    parts = []
    for gen in ("0", "1", "2"):
        les = sorted(
            (le for g, le in after if g == gen), key=lambda le: float(le.replace("+Inf", "inf"))
        )
        prev, counts = 0.0, []
        for le in les:
            cum = after[(gen, le)] - before.get((gen, le), 0.0)
            if cum > prev:
                shown = ">0.5s" if le == "+Inf" else f"≤{float(le) * 1000:g}ms"
                counts.append(f"{shown} {int(cum - prev)}")
            prev = cum
        parts.append(f"gen{gen}: {int(prev)}" + (f" ({', '.join(counts)})" if counts else ""))
    return ", ".join(parts)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the sink (a separate process: python sip_load.py --sink PORT START END OUT) ---------------


#: How long the sink sleeps when its socket is empty.
SINK_POLL_S = 0.001


def speech_payloads() -> dict[int, list[bytes]]:
    """One second of speech-like audio (syllable bursts, varying pitch, a little noise) as
    50 G.711 payloads per payload type (0 PCMU, 8 PCMA)."""
    import numpy as np

    from callbridge.media.g711 import alaw_encode, ulaw_encode

    rng = np.random.default_rng(7)
    t = np.arange(8000) / 8000
    pitch = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 8000
    voice = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    pcm = np.clip(6000 * voice * envelope + rng.normal(0, 200, t.size), -32768, 32767)
    frames = [pcm[i : i + 160].astype("<i2").tobytes() for i in range(0, 8000, 160)]
    return {0: [ulaw_encode(f) for f in frames], 8: [alaw_encode(f) for f in frames]}


def run_sink(port: int, start: float, end: float, out: Path, stop_at: float) -> None:
    """Answer every RTP packet with speech (new SSRC); record kernel arrival times in
    [start, end]."""
    voice = speech_payloads()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", port))
    # Polled, never blocked in recvmsg: a receiver asleep on its socket must be woken by the
    # kernel for each datagram, and on loopback that wake-up is paid by the *sender* — it
    # would add ~3 µs of the sink's cost to every packet callbridge sends (a NIC wakes nobody).
    # The kernel's arrival timestamps are taken on arrival, so the polling delay measures nothing.
    sock.setblocking(False)
    streams: dict[tuple[str, int], list[tuple[float, int, int]]] = {}
    ssrc = b"\x5a\x5a\x5a\x5a"
    while time.time() < stop_at:
        try:
            data, ancillary, _flags, source = sock.recvmsg(2048, 64)
        except BlockingIOError:
            time.sleep(SINK_POLL_S)
            continue
        if len(data) < 12:
            continue
        frames = voice.get(data[1] & 0x7F)
        if frames is not None and data[0] == 0x80 and len(data) == 172:  # 20 ms of G.711
            payload = frames[int.from_bytes(data[2:4], "big") % len(frames)]
        else:
            payload = data[12:]  # telephone-event, or anything unexpected: echoed as is
        sock.sendto(data[:8] + ssrc + payload, source)
        stamp = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanos = struct.unpack("qq", value[:16])
                stamp = seconds + nanos / 1e9
        if start <= stamp <= end and data[1] & 0x7F in (0, 8):
            seq, ts = struct.unpack_from("!HI", data, 2)
            streams.setdefault(source, []).append((stamp, seq, ts))
    sock.close()
    deviations: list[float] = []
    late = lost = packets = skipped = 0
    late_at: set[int] = set()  # 100 ms slots of the window in which late packets were sent
    for samples in streams.values():
        first = samples[0][1]  # arrival order; sort by sequence relative to the first one
        samples.sort(key=lambda s: (s[1] - first + 32768) % 65536)
        _t0, seq0, ts0 = samples[0]
        offsets = [t - ((ts - ts0) % (1 << 32)) / 8000 for t, _, ts in samples]
        base = min(offsets)
        devs = [o - base for o in offsets]
        deviations.extend(devs)
        late += sum(1 for d in devs if d > FRAME)
        late_at.update(
            int((t - start) * 10) for (t, _, _), d in zip(samples, devs, strict=True) if d > FRAME
        )
        span = (samples[-1][1] - seq0) % 65536 + 1
        lost += max(0, span - len(samples))
        packets += len(samples)
        # Frames the sender skipped after a stall (spec §10: the timestamp jumps, the
        # sequence does not): never sent, so neither late nor lost above, but not heard.
        for (_, seq_a, ts_a), (_, seq_b, ts_b) in itertools.pairwise(samples):
            if (seq_b - seq_a) % 65536 == 1:
                skipped += max(0, ((ts_b - ts_a) % (1 << 32)) // 160 - 1)
    deviations.sort()
    p99 = deviations[int(0.99 * (len(deviations) - 1))] if deviations else float("nan")
    out.write_text(
        json.dumps(
            {
                "streams": len(streams),
                "packets": packets,
                "p99": p99,
                "late": late,
                "late_at": sorted(late_at),
                "lost": lost,
                "skipped": skipped,
            }
        )
    )


# -- the driver --------------------------------------------------------------------------------


def result(name: str, value: float, unit: str, op: str, target: float, fmt: str = ".1f") -> bool:
    ok = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    print(f"RESULT {name}={value:{fmt}} {unit} target{op}{target:g} {'PASS' if ok else 'FAIL'}")
    return ok


def start_server(tmp: Path, sip_port: int, http_port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["CALLBRIDGE_SIP_DEFAULT_FLOW"] = json.dumps([{"type": "answer"}, {"type": "echo"}])
    env["CALLBRIDGE_LOG_LEVEL"] = "warning"
    args = [
        sys.executable, "-m", "callbridge", "serve", "--data-dir", str(tmp / "data"),
        "--http-port", str(http_port), "--sip-port", str(sip_port),
        "--rtp-ports", "20000-21999", "--sip-trust", "127.0.0.0/8",
    ]  # fmt: skip
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(pinned(1, args), env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", sip_port)) == 0:
                return server
        if server.poll() is not None:
            break
        time.sleep(0.1)
    server.kill()
    raise SystemExit(f"callbridge serve did not start:\n{(tmp / 'server.log').read_text()}")


def sipp(tmp: Path, sip_port: int, extra: list[str], limit: float) -> tuple[int, float]:
    sipp_bin = shutil.which("sipp")
    assert sipp_bin is not None
    args = [
        sipp_bin, "-sf", str(tmp / "load.xml"), f"127.0.0.1:{sip_port}", "-i", "127.0.0.1",
        "-p", str(free_port()), "-mp", str(free_port()), "-nostdin", "-timeout",
        f"{int(limit)}s", "-timeout_error", "-max_socket", "2000", *extra,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(pinned(0, args), cwd=tmp, capture_output=True, timeout=limit + 10)
    if done.returncode not in (0, 1):  # 1 = some calls failed (counted); else sipp itself failed
        tail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-5:]
        print("sipp failed:", *tail, sep="\n  ", file=sys.stderr)
    return done.returncode, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="setup phase calls per second")
    parser.add_argument("--calls", type=int, default=600, help="setup phase call count")
    parser.add_argument("--concurrent", type=int, default=300)
    parser.add_argument("--hold", type=float, default=25.0, help="seconds each call stays up")
    parser.add_argument("--sink", nargs=5, metavar=("PORT", "START", "END", "OUT", "STOP"))
    args = parser.parse_args()
    if args.sink:
        port, start, end, out, stop = args.sink
        run_sink(int(port), float(start), float(end), Path(out), float(stop))
        return 0
    if shutil.which("sipp") is None:
        print("sipp (Debian sip-tester) is not installed", file=sys.stderr)
        return 2
    ok = True
    with tempfile.TemporaryDirectory(prefix="sip-load-") as name:
        tmp = Path(name)
        (tmp / "load.xml").write_text(SCENARIO)
        sip_port, http_port = free_port(), free_port()
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
        server = start_server(tmp, sip_port, http_port)
        try:
            # 1. setup rate
            sink_port = free_port()
            hold_ms = 200
            extra = ["-r", f"{args.rate:g}", "-m", str(args.calls), "-l", str(args.calls)]
            extra += ["-d", str(hold_ms), "-key", "sink_port", str(sink_port)]
            code, elapsed = sipp(tmp, sip_port, extra, limit=args.calls / args.rate + 30)
            rate = args.calls / max(1e-6, elapsed - hold_ms / 1000) if code == 0 else 0.0
            print(
                f"setup: {args.calls} calls at {args.rate:g}/s, sipp exit {code}, {elapsed:.1f} s"
            )
            ok &= result("call_setup_rate", rate, "calls/s", ">=", 50)
            # 2. simultaneous echo calls
            n, hold = args.concurrent, args.hold
            ramp = n / 100.0
            window_start = time.time() + ramp + 2.0
            window_end = window_start + max(5.0, hold - ramp - 4.0)
            sink_out = tmp / "sink.json"
            sink = subprocess.Popen(
                pinned(0, [sys.executable, __file__, "--sink", str(sink_port),
                           str(window_start), str(window_end), str(sink_out),
                           str(window_end + 1.0)])
            )  # fmt: skip
            time.sleep(0.3)
            extra = ["-r", "100", "-m", str(n), "-l", str(n), "-d", str(int(hold * 1000))]
            extra += ["-key", "sink_port", str(sink_port)]
            sipp_args = (tmp, sip_port, extra, hold + ramp + 30)
            outcome: dict[str, tuple[int, float]] = {}
            runner = threading.Thread(target=lambda: outcome.update(r=sipp(*sipp_args)))
            runner.start()
            time.sleep(max(0.0, window_start - time.time()))
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            wait0, gc0 = runqueue_wait_seconds(server.pid), gc_pauses(http_port)
            time.sleep(max(0.0, window_end - time.time()))
            cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
            wait1, gc1 = runqueue_wait_seconds(server.pid), gc_pauses(http_port)
            load = os.getloadavg()
            runner.join()
            sink.wait(timeout=30)
            code, _ = outcome["r"]
            stats = json.loads(sink_out.read_text())
            print(
                f"concurrent: {n} calls, sipp exit {code}, {stats['streams']} RTP streams, "
                f"{stats['packets']} packets in a {window_end - window_start:.1f} s window"
            )
            print(
                f"window: load average {load[0]:.2f} (1 min, {os.cpu_count()} CPUs); server "
                f"waited for a CPU {100 * (wait1 - wait0) / (t1 - t0):.1f}% of the window; "
                f"server CPU {100 * (cpu1 - cpu0) / (t1 - t0):.1f}% of a core"
            )
            print(f"server gc pauses in the window: {describe_gc(gc0, gc1)}")
            # Calls whose media reached the sink; any sipp failure fails the figure too.
            streams = stats["streams"]
            ok &= result("simultaneous_echo_calls", streams, "calls", ">=", n, "d") and code == 0
            ok &= result("rtp_send_jitter_p99", stats["p99"] * 1000, "ms", "<=", 5, ".2f")
            if stats["late"]:
                # When: a burst at one instant is a stall (the server's or the machine's), a
                # spread is a server that cannot keep up.
                slots = ", ".join(f"+{slot / 10:.1f}s" for slot in stats["late_at"][:20])
                print(f"late packets arrived in these 100 ms slots of the window: {slots}")
            ok &= result("late_packets", stats["late"], "packets", "==", 0, "d")
            ok &= result("lost_packets", stats["lost"], "packets", "==", 0, "d")
            ok &= result("skipped_frames", stats["skipped"], "frames", "==", 0, "d")
            per_call = 100.0 * (cpu1 - cpu0) / (t1 - t0) / max(1, stats["streams"])
            ok &= result("cpu_per_call", per_call, "%core", "<=", 100 / n, ".3f")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
