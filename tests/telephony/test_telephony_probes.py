"""Raw-socket probes for what sipp hides (spec ``sip.md`` §14.2): retransmission behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sipp_harness import free_port, running

from callbridge.flows.model import Action
from callbridge.store import StoreBusyError

ANSWER_AFTER_1500MS = json.dumps(
    [{"type": "sleep", "option": {"duration": 1500}}, {"type": "answer"}, {"type": "echo"}]
)


def invite(port: int, local: int) -> bytes:
    body = (
        b"v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    head = (
        f"INVITE sip:100@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKprobe1;rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:100@127.0.0.1>\r\n"
        "Call-ID: probe-call\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:probe@127.0.0.1:{local}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def bye(port: int, local: int, tag: str) -> bytes:
    return (
        f"BYE sip:callbridge@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKprobebye;rport\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:100@127.0.0.1>;tag={tag}\r\n"
        "Call-ID: probe-call\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@contextlib.contextmanager
def probe_socket() -> Iterator[tuple[socket.socket, int]]:
    """A non-blocking UDP socket on 127.0.0.1 and its port: the probe's SIP endpoint."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        yield sock, sock.getsockname()[1]


async def collect(sock: socket.socket, seconds: float) -> list[bytes]:
    loop = asyncio.get_running_loop()
    out: list[bytes] = []
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(left):
                out.append(await loop.sock_recv(sock, 65536))
        except TimeoutError:
            break
    return out


async def test_duplicate_invite_is_one_call_and_duplicate_bye_same_200(tmp_path: Path) -> None:
    async with running(tmp_path, flow=ANSWER_AFTER_1500MS) as h:
        with probe_socket() as (sock, local):
            target = ("127.0.0.1", h.port)
            sock.sendto(invite(h.port, local), target)
            await asyncio.sleep(0.3)
            sock.sendto(invite(h.port, local), target)
            replies = await collect(sock, 2.5)
            finals = [r for r in replies if r.startswith(b"SIP/2.0 200")]
            tags = {m.group(1) for r in replies if (m := re.search(rb"To: .*;tag=(\w+)", r))}
            assert len(tags) == 1 and finals
            tag = tags.pop().decode()
            ack = bye(h.port, local, tag).replace(b"BYE", b"ACK").replace(b"2 ACK", b"1 ACK")
            sock.sendto(ack.replace(b"probebye", b"probeack"), target)
            sock.sendto(bye(h.port, local, tag), target)
            first = await collect(sock, 0.5)
            sock.sendto(bye(h.port, local, tag), target)
            second = await collect(sock, 0.5)
            ok = [r for r in first if b"CSeq: 2 BYE" in r]
            assert len(ok) == 1 and ok[0].startswith(b"SIP/2.0 200")
            assert [r for r in second if b"CSeq: 2 BYE" in r] == ok
        (call,) = await h.wait_calls_ended(1)
        assert call.hangup_reason.value == "normal"


async def test_unanswered_invite_is_retransmitted_per_timer_a(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            port = free_port()
            sock.bind(("127.0.0.1", port))
            sock.setblocking(False)
            await h.add_trunk("silent", port)
            workspace = await h.workspace_id()
            await h.telephony.dial(workspace_id=workspace, to="555", actions=[Action("hangup")])
            loop = asyncio.get_running_loop()
            arrivals: list[float] = []
            deadline = loop.time() + 4.2
            while (left := deadline - loop.time()) > 0:
                try:
                    async with asyncio.timeout(left):
                        data = await loop.sock_recv(sock, 65536)
                except TimeoutError:
                    break
                if data.startswith(b"INVITE"):
                    arrivals.append(time.monotonic())
            gaps = [round(b - a, 1) for a, b in itertools.pairwise(arrivals)]
            assert gaps[:3] == [0.5, 1.0, 2.0]


async def test_invite_when_every_rtp_port_is_taken_gets_503_with_retry_after(
    tmp_path: Path,
) -> None:
    # One RTP pair (34000/34001): the first call holds it while its flow waits 1.5 s.
    async with running(tmp_path, flow=ANSWER_AFTER_1500MS, rtp_ports="34000-34002") as h:
        with probe_socket() as (sock, local):
            target = ("127.0.0.1", h.port)
            sock.sendto(invite(h.port, local), target)
            await asyncio.sleep(0.3)
            second = (
                invite(h.port, local)
                .replace(b"probe-call", b"probe-call-2")
                .replace(b"z9hG4bKprobe1", b"z9hG4bKprobe2")
                .replace(b"tag=probe", b"tag=probe2")
            )
            sock.sendto(second, target)
            replies = await collect(sock, 1.0)
            refused = [r for r in replies if b"probe-call-2" in r and r.startswith(b"SIP/2.0 5")]
            # (repeated every Timer G while unacknowledged, RFC 3261 §17.2.1)
            assert refused, replies
            assert all(r.startswith(b"SIP/2.0 503 ") for r in refused)
            assert re.search(rb"\r\nRetry-After: 5\r\n", refused[0])
            # The first call is unharmed: it is answered once its flow's pause ends.
            later = await collect(sock, 2.0)
            assert any(r.startswith(b"SIP/2.0 200") and b"probe-call\r\n" in r for r in later)


async def refused_with_503(port: int, *, retry_after: int) -> None:
    """Send one INVITE; every final answer must be 503 with ``Retry-After``."""
    with probe_socket() as (sock, local):
        sock.sendto(invite(port, local), ("127.0.0.1", port))
        replies = await collect(sock, 0.4)
    finals = [r for r in replies if not r.startswith(b"SIP/2.0 1")]
    assert finals and all(r.startswith(b"SIP/2.0 503 ") for r in finals), replies
    assert re.search(rb"\r\nRetry-After: %d\r\n" % retry_after, finals[0])


async def test_invite_beyond_the_setup_backlog_bound_gets_503_at_once(tmp_path: Path) -> None:
    async with running(tmp_path, flow=ANSWER_AFTER_1500MS) as h:
        h.telephony.max_starting = 0  # every setup slot taken
        await refused_with_503(h.port, retry_after=2)
        assert h.telephony.pool.available == h.telephony.pool.capacity  # no port taken


async def test_invite_while_the_store_is_busy_gets_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the store refuses the call's writes as an overloaded one would.
    async def busy() -> None:
        raise StoreBusyError("writer queue full")

    async with running(tmp_path, flow=ANSWER_AFTER_1500MS) as h:
        monkeypatch.setattr(h.telephony.store.workspaces, "first", busy)
        h.telephony._default_workspace = None
        await refused_with_503(h.port, retry_after=2)
        await asyncio.sleep(0.1)
        assert h.telephony.pool.available == h.telephony.pool.capacity  # port given back
