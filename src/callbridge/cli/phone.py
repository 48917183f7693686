"""``callbridge phone``: a small command-line SIP phone on callbridge's own SIP/RTP core.

* ``callbridge phone register --server HOST:PORT --user U --password P [--auto-answer]
  [--duration S]`` registers (digest, refreshed at 90 % of the granted expiry), prints the
  result, answers incoming calls when ``--auto-answer`` is given, and unregisters on exit;
* ``callbridge phone dial URI [--server HOST:PORT] [--play in.wav] [--record out.wav]
  [--dtmf 123#] [--duration S]`` calls ``URI`` (sent to ``--server``, else to the URI's own
  host and port), plays the WAV, sends the digits once answered, records what it hears and
  hangs up after ``--duration`` seconds (or when the far end does).

Progress is printed one line per event (``ringing``, ``answered``, ``dtmf 5``, ``ended …``).
Exit code 0 when the call was answered (or the registration succeeded), 1 when it was not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from callbridge.cli.common import CommandError
from callbridge.media.wav import WavFormatError, read_wav, write_wav
from callbridge.sip.errors import SipError
from callbridge.sip.headers import SipUri, parse_uri
from callbridge.sip.registration import RegState
from callbridge.telephony.phone import PhoneCall, SoftPhone

DTMF = frozenset("0123456789ABCD#*")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    phone = subparsers.add_parser("phone", help="A small SIP phone for demos and smoke tests.")
    commands = phone.add_subparsers(dest="phone_command", metavar="COMMAND", required=True)

    reg = commands.add_parser("register", help="Register with a SIP server (and answer calls).")
    reg.add_argument("--server", required=True, help="Registrar HOST:PORT.")
    reg.add_argument("--user", required=True, help="SIP user name (extension).")
    reg.add_argument("--password", default=None, help="Digest password.")
    reg.add_argument("--expires", type=int, default=300, help="Asked expiry in seconds.")
    reg.add_argument("--auto-answer", action="store_true", help="Answer incoming calls.")
    reg.add_argument("--duration", type=float, default=0.0,
                     help="Stay registered this many seconds (0: register and exit).")  # fmt: skip
    _media_flags(reg)
    reg.set_defaults(handler=lambda a: _run(_register(a)))

    dial = commands.add_parser("dial", help="Call a SIP URI.")
    dial.add_argument("uri", help="e.g. sip:100@127.0.0.1:5060")
    dial.add_argument("--server", default=None, help="Send to HOST:PORT (default: the URI's).")
    dial.add_argument("--user", default="phone", help="From user (and digest user).")
    dial.add_argument("--password", default=None, help="Digest password for 401/407.")
    dial.add_argument("--dtmf", default="", help="Digits to send once answered (0-9A-D#*).")
    dial.add_argument("--duration", type=float, default=5.0, help="Hang up after S seconds.")
    _media_flags(dial)
    dial.set_defaults(handler=lambda a: _run(_dial(a)))


def _media_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--play", type=Path, default=None, help="WAV file to send.")
    parser.add_argument("--record", type=Path, default=None, help="WAV file of what is heard.")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--bind", default="127.0.0.1", help="Local address (SIP and RTP).")
    parser.add_argument("--sip-port", type=int, default=0, help="Local SIP port (0: any).")
    parser.add_argument("--rtp-ports", default="40000-40999", help="Local RTP port range.")


def _run(job: object) -> int:
    try:
        return asyncio.run(job)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130


def _hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{what} must be HOST:PORT, got {value!r}")
    return host, int(port)


def _load_play(args: argparse.Namespace) -> bytes:
    if args.play is None:
        return b""
    try:
        return read_wav(args.play)
    except (OSError, WavFormatError) as exc:
        raise CommandError(f"--play {args.play}: {exc}") from None


def _save(call: PhoneCall, path: Path | None) -> None:
    if path is not None:
        write_wav(path, call.recording)
        print(f"recorded {len(call.recording) / 16000:.2f} s to {path}", flush=True)


def _phone(args: argparse.Namespace, user: str) -> SoftPhone:
    try:
        return SoftPhone(host=args.bind, port=args.sip_port, rtp_ports=args.rtp_ports, user=user)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


async def _register(args: argparse.Namespace) -> int:
    server = _hostport(args.server, "--server")
    audio = _load_play(args)
    phone = _phone(args, args.user)
    answered: list[PhoneCall] = []

    def on_call(call: PhoneCall) -> None:
        print(f"incoming call from {call.sip.invite.from_.uri}: answered", flush=True)
        call.play.extend(audio)
        answered.append(call)

    phone.on_call = on_call
    phone.auto_answer = args.auto_answer
    await phone.start()
    try:
        registration = await phone.register(
            server, args.user, args.password, transport=args.transport.upper(),
            expires=args.expires,
        )  # fmt: skip
        if registration.state is not RegState.REGISTERED:
            print(f"registration failed: {registration.last_status}", flush=True)
            return 1
        print(f"registered {registration.aor} for {registration.granted} s", flush=True)
        if args.duration > 0:
            await asyncio.sleep(args.duration)
        for call in answered:
            if not call.ended.is_set():
                await phone.hangup(call)
            print(f"ended ({call.outcome})", flush=True)
            _save(call, args.record)
        return 0
    finally:
        await phone.close()


async def _dial(args: argparse.Namespace) -> int:
    try:
        uri = parse_uri(args.uri)
    except SipError as exc:
        raise CommandError(f"{args.uri!r} is not a SIP URI: {exc}") from None
    if not isinstance(uri, SipUri):
        raise CommandError(f"{args.uri!r} is not a SIP URI")
    digits = args.dtmf.upper()
    if any(d not in DTMF for d in digits):
        raise CommandError("--dtmf takes 0-9, A-D, # and *")
    server = _hostport(args.server, "--server") if args.server else (uri.host, uri.port or 5060)
    audio = _load_play(args)
    phone = _phone(args, args.user)
    await phone.start()
    try:
        credentials = (args.user, args.password) if args.password is not None else None
        call = await phone.dial(
            str(uri), server, transport=args.transport.upper(), credentials=credentials
        )
        call.play.extend(audio)
        waits = [asyncio.ensure_future(e.wait()) for e in (call.answered, call.ended)]
        try:
            await asyncio.wait(waits, timeout=32.0, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not call.answered.is_set():
            print(f"not answered ({call.outcome or 'timeout'} {call.status or ''})", flush=True)
            return 1
        print("answered", flush=True)
        if digits:
            with contextlib.suppress(RuntimeError, ValueError):
                await call.leg.send_dtmf(digits, duration_ms=100, interval_ms=100)
                print(f"sent dtmf {digits}", flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                await call.ended.wait()
        by = "remote" if call.ended.is_set() else "local"
        if not call.ended.is_set():
            await phone.hangup(call)
        for digit in call.digits:
            print(f"dtmf {digit}", flush=True)
        print(f"ended by {by}", flush=True)
        _save(call, args.record)
        return 0
    finally:
        await phone.close()
