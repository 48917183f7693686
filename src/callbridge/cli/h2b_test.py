"""``callbridge h2b-test FOLDER``: play a folder of recognition fixtures against a /bots server.

The folder format is the ``uhlive`` SDK test runner's: audio files (``.pcm`` = 8 kHz 16-bit
little-endian linear PCM, ``.g711a``/``.alaw`` = A-law, ``.g711u``/``.ulaw`` = µ-law) and
``.test`` TOML files::

    audio = "boolean-01.pcm"
    grammars = ["builtin:speech/boolean"]
    skip = false                     # optional; skipped unless named with --tests
    [params]                         # RECOGNIZE parameters (recognition_mode included)
    recognition_mode = "normal"
    speech_complete_timeout = 800
    [expected]
    completion_cause = "Success"
    [expected.interpretation]        # omitted when no interpretation is expected
    type = "builtin:speech/boolean"  # the grammar URI without its query string
    value = true

A fixture passes when the RECOGNITION-COMPLETE has the expected cause and either no
interpretation was expected and none came, or the interpretation's ``type`` and ``value`` are
the expected ones. The client is the SDK's ``Recognizer`` (every frame the server sends is
decoded by it) over a real WebSocket; audio is streamed in chunks paced in real time (or
``--speed`` times faster), followed by codec silence until the recognition completes. One
connection and session serve the whole folder; the session is re-opened when the codec changes.

Authentication: ``--token`` (a callbridge access key or token), else ``UHLIVE_API_CLIENT`` /
``UHLIVE_API_SECRET`` exchanged at the SDK's token endpoint (``UHLIVE_AUTH_SERVER``, HTTPS).
Exit code: 0 when the pass rate reaches ``--min-pass-rate`` (default 100 %), 1 otherwise, 2 for
usage errors (missing SDK, unreadable folder, unreachable server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import os
import ssl
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urljoin

from callbridge.cli.common import CommandError

__all__ = [
    "Fixture",
    "Outcome",
    "RunnerSession",
    "Summary",
    "bots_url",
    "judge",
    "load_fixtures",
    "play_fixtures",
    "play_one",
    "register",
    "run",
]

#: File extension → OPEN ``audio_codec``.
CODECS = {
    "pcm": "linear",
    "linear": "linear",
    "g711a": "g711a",
    "alaw": "g711a",
    "g711u": "g711u",
    "ulaw": "g711u",
    "mulaw": "g711u",
}
#: Silence byte per codec (h2b.md §2).
SILENCE = {"linear": b"\x00", "g711a": b"\x55", "g711u": b"\xff"}
BYTES_PER_SECOND = {"linear": 16000, "g711a": 8000, "g711u": 8000}
DEFAULT_URL = "ws://127.0.0.1:8080/bots"
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class Fixture:
    """One ``.test`` file, resolved."""

    name: str
    audio: Path
    codec: str
    grammars: tuple[str, ...]
    params: dict[str, Any]
    cause: str
    #: Expected (type, value), or None when no interpretation is expected.
    interpretation: tuple[str, Any] | None
    skip: bool = False

    @property
    def group(self) -> str:
        """A short name for reports: the first grammar's builtin path, plus the expected cause
        when no interpretation is expected (``boolean``, ``boolean:NoMatch``)."""
        first = self.grammars[0] if self.grammars else ""
        short = first.split("?", 1)[0].removeprefix("builtin:").removeprefix("speech/")
        return short if self.interpretation is not None else f"{short}:{self.cause}"


@dataclass(slots=True)
class Outcome:
    """What one fixture got."""

    fixture: Fixture
    passed: bool
    detail: str
    error: bool = False
    cause: str | None = None
    value: Any = None
    transcript: str | None = None
    #: Monotonic time the first audio chunk was sent, and when RECOGNITION-COMPLETE arrived.
    started_at: float = 0.0
    completed_at: float = 0.0
    events: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Summary:
    """Counts over a run."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def ran(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def pass_rate(self) -> float:
        return 100.0 * self.passed / self.ran if self.ran else 0.0

    def add(self, outcome: Outcome) -> None:
        if outcome.passed:
            self.passed += 1
        elif outcome.error:
            self.errors += 1
        else:
            self.failed += 1
        ok, total = self.groups.get(outcome.fixture.group, (0, 0))
        self.groups[outcome.fixture.group] = (ok + outcome.passed, total + 1)


class FixtureError(ValueError):
    """A ``.test`` file that cannot be used."""


def _load_one(path: Path) -> Fixture:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FixtureError(f"{path.name}: {exc}") from None
    try:
        audio = path.parent / str(data["audio"])
        grammars = data["grammars"]
        expected = data["expected"]
        cause = str(expected["completion_cause"])
    except (KeyError, TypeError) as exc:
        raise FixtureError(f"{path.name}: missing key {exc}") from None
    if isinstance(grammars, str):
        grammars = [grammars]
    if not isinstance(grammars, list) or not all(isinstance(g, str) for g in grammars):
        raise FixtureError(f"{path.name}: 'grammars' must be a list of URIs")
    ext = audio.suffix.lstrip(".").lower()
    if ext not in CODECS:
        raise FixtureError(f"{path.name}: unknown audio extension {audio.suffix!r}")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise FixtureError(f"{path.name}: [params] must be a table")
    nlu = expected.get("interpretation")
    interpretation = None
    if isinstance(nlu, dict) and "type" in nlu:
        interpretation = (str(nlu["type"]), nlu.get("value"))
    return Fixture(
        name=path.stem,
        audio=audio,
        codec=CODECS[ext],
        grammars=tuple(grammars),
        params=dict(params),
        cause=cause,
        interpretation=interpretation,
        skip=bool(data.get("skip", False)),
    )


def load_fixtures(
    folder: Path, names: Sequence[str] = (), patterns: Sequence[str] = ()
) -> list[Fixture]:
    """The fixtures of ``folder`` sorted by name: all, or those named / matching a glob."""
    if not folder.is_dir():
        raise FixtureError(f"{folder}: not a folder")
    if names:
        paths = [folder / (n if n.endswith(".test") else n + ".test") for n in names]
    else:
        paths = sorted(folder.glob("*.test"))
    if patterns:
        paths = [p for p in paths if any(fnmatch.fnmatch(p.stem, g) for g in patterns)]
    fixtures = [_load_one(p) for p in paths]
    if names:  # explicitly named tests run even when marked skip (as the SDK runner does)
        fixtures = [
            Fixture(f.name, f.audio, f.codec, f.grammars, f.params, f.cause, f.interpretation)
            for f in fixtures
        ]
    return fixtures


def judge(fixture: Fixture, cause: str | None, nlu: tuple[str, Any] | None) -> tuple[bool, str]:
    """(passed, description) of a completion against the fixture's expectation."""
    got = f"{cause}" + (f" {nlu[0]} {nlu[1]!r}" if nlu else "")
    want = f"{fixture.cause}" + (
        f" {fixture.interpretation[0]} {fixture.interpretation[1]!r}"
        if fixture.interpretation
        else ""
    )
    if cause != fixture.cause:
        return False, f"expected {want}, got {got}"
    if fixture.interpretation is None:
        if nlu is None:
            return True, got
        return False, f"expected {want} without interpretation, got {got}"
    if nlu is None or nlu[0] != fixture.interpretation[0] or nlu[1] != fixture.interpretation[1]:
        return False, f"expected {want}, got {got}"
    return True, got


def bots_url(url: str | None) -> str:
    """The /bots URL: ``url`` as given, else ``UHLIVE_API_URL`` joined with /bots (as the SDK)."""
    if url:
        return url
    env = os.environ.get("UHLIVE_API_URL")
    return urljoin(env, "/bots") if env else DEFAULT_URL


def _require_sdk() -> None:
    try:
        import uhlive.stream.recognition  # noqa: F401
    except ImportError:
        raise CommandError(
            "h2b-test needs the uhlive SDK: pip install 'callbridge[h2b-test]' (uhlive==2.1.0)"
        ) from None


async def _fetch_token(client_id: str, secret: str) -> str:
    import httpx
    from uhlive.auth import build_authentication_request

    url, form = build_authentication_request(client_id, secret)
    # The system trust store, honouring SSL_CERT_FILE / SSL_CERT_DIR (a private CA).
    trust = ssl.create_default_context()
    try:
        async with httpx.AsyncClient(timeout=10, verify=trust) as http:
            reply = await http.post(url, data=form)
    except httpx.HTTPError as exc:
        raise CommandError(f"token endpoint {url}: {exc}") from None
    if reply.status_code != 200:
        raise CommandError(f"token endpoint {url}: HTTP {reply.status_code} {reply.text[:200]}")
    token = reply.json().get("access_token")
    if not isinstance(token, str):
        raise CommandError(f"token endpoint {url}: no access_token in the reply")
    return token


class RunnerSession:
    """One WebSocket and the SDK's Recognizer over it."""

    def __init__(self, ws: Any, timeout: float) -> None:
        from uhlive.stream.recognition import Recognizer

        self.ws = ws
        self.rec = Recognizer()
        self.codec: str | None = None
        self.timeout = timeout

    async def event(self, wait_s: float | None = None) -> Any:
        async with asyncio.timeout(wait_s or self.timeout):
            data = await self.ws.recv()
        return self.rec.receive(data)

    async def use_codec(self, codec: str) -> None:
        from uhlive.stream.recognition import Closed, Opened

        if codec == self.codec:
            return
        if self.codec is not None:
            await self.ws.send(self.rec.close())
            event = await self.event()
            if not isinstance(event, Closed):
                raise RuntimeError(f"CLOSE answered {event}")
        await self.ws.send(self.rec.open("h2b-test", audio_codec=codec))
        event = await self.event()
        if not isinstance(event, Opened):
            raise RuntimeError(f"OPEN answered {event}")
        self.codec = codec

    async def close(self) -> None:
        from uhlive.stream.recognition import Closed

        if self.codec is None:
            return
        await self.ws.send(self.rec.close())
        with contextlib.suppress(Exception):
            while not isinstance(await self.event(5), Closed):
                pass


async def _stream(
    ws: Any, audio: bytes, codec: str, speed: float, chunk_ms: int, started: list[float]
) -> None:
    """Send ``audio`` then silence, chunk by chunk, paced at ``speed`` × real time."""
    size = max(1, BYTES_PER_SECOND[codec] * chunk_ms // 1000)
    silence = SILENCE[codec] * size
    chunk_s = chunk_ms / 1000 / speed if speed > 0 else 0.0
    t0 = time.monotonic()
    started.append(t0)
    k = 0
    while True:
        offset = k * size
        chunk = audio[offset : offset + size] if offset < len(audio) else silence
        if len(chunk) < size:
            chunk += silence[: size - len(chunk)]
        await ws.send(chunk)
        k += 1
        delay = t0 + k * chunk_s - time.monotonic()
        await asyncio.sleep(max(0.0, delay))


async def play_one(
    session: RunnerSession, fixture: Fixture, *, speed: float = 1.0, chunk_ms: int = 60,
    overrides: dict[str, Any] | None = None,
) -> Outcome:  # fmt: skip
    """Recognize one fixture on an open connection; never raises for a server-side problem."""
    from uhlive.stream.recognition import (
        RecognitionComplete,
        RecognitionInProgress,
        StartOfInput,
    )

    try:
        audio = fixture.audio.read_bytes()
    except OSError as exc:
        return Outcome(fixture, False, f"cannot read audio: {exc}", error=True)
    params = dict(fixture.params)
    params.update(overrides or {})
    start_timers = bool(params.pop("start_input_timers", True))
    mode = str(params.pop("recognition_mode", "normal"))
    await session.use_codec(fixture.codec)
    await session.ws.send(
        session.rec.recognize(
            *fixture.grammars, start_timers=start_timers, recognition_mode=mode, **params
        )
    )
    first = await session.event()
    if not isinstance(first, RecognitionInProgress):
        return Outcome(
            fixture,
            False,
            f"RECOGNIZE answered {type(first).__name__}: {first.completion_reason}",
            error=True,
        )
    started: list[float] = []
    sender = asyncio.create_task(
        _stream(session.ws, audio, fixture.codec, speed, chunk_ms, started)
    )
    names: list[str] = []
    try:
        while True:
            event = await session.event()
            names.append(type(event).__name__)
            if isinstance(event, RecognitionComplete):
                break
            if not isinstance(event, StartOfInput):
                return Outcome(fixture, False, f"unexpected event {event}", error=True)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    done_at = time.monotonic()
    cause = event.completion_cause.value if event.completion_cause else None
    body = event.body
    nlu = (body.nlu.type, body.nlu.value) if body is not None and body.nlu is not None else None
    transcript = body.asr.transcript if body is not None and body.asr is not None else None
    passed, detail = judge(fixture, cause, nlu)
    expect_onset = mode == "normal" and fixture.cause != "NoInputTimeout"
    if passed and expect_onset and names[:1] != ["StartOfInput"]:
        passed, detail = False, f"no START-OF-INPUT before RECOGNITION-COMPLETE ({detail})"
    if not passed and cause != fixture.cause and event.completion_reason:
        detail += f" ({event.completion_reason})"
    return Outcome(
        fixture, passed, detail, cause=cause, value=nlu[1] if nlu else None,
        transcript=transcript, started_at=started[0] if started else done_at,
        completed_at=done_at, events=names,
    )  # fmt: skip


async def play_fixtures(
    url: str,
    token: str,
    fixtures: Sequence[Fixture],
    *,
    speed: float = 1.0,
    chunk_ms: int = 60,
    reply_timeout_s: float = 30.0,
    overrides: dict[str, Any] | None = None,
    out: TextIO | None = None,
    verbose: bool = False,
) -> tuple[list[Outcome], Summary]:
    """Play ``fixtures`` in order over one connection; print one line per fixture to ``out``."""
    from uhlive.stream.recognition import build_connection_request
    from websockets.asyncio.client import connect

    _, headers = build_connection_request(token)
    outcomes: list[Outcome] = []
    summary = Summary()
    width = max((len(f.name) for f in fixtures), default=0)
    try:
        ws_cm = connect(
            url, additional_headers=headers, open_timeout=reply_timeout_s, max_size=2**20
        )
        ws = await ws_cm.__aenter__()
    except Exception as exc:
        raise CommandError(f"cannot connect to {url}: {exc}") from None
    try:
        session = RunnerSession(ws, reply_timeout_s)
        broken: str | None = None
        for fixture in fixtures:
            if fixture.skip:
                summary.skipped += 1
                if out:
                    print(f"SKIP {fixture.name}", file=out, flush=True)
                continue
            if broken is not None:
                outcome = Outcome(fixture, False, broken, error=True)
            else:
                try:
                    outcome = await play_one(
                        session, fixture, speed=speed, chunk_ms=chunk_ms, overrides=overrides
                    )
                except TimeoutError:
                    outcome = Outcome(fixture, False, f"no reply within {reply_timeout_s} s", True)
                    broken = "skipped after an earlier timeout (connection state unknown)"
                except Exception as exc:
                    outcome = Outcome(fixture, False, f"{type(exc).__name__}: {exc}", error=True)
                    broken = f"not run: connection failed earlier ({type(exc).__name__})"
            outcomes.append(outcome)
            summary.add(outcome)
            if out:
                word = "PASS" if outcome.passed else ("ERROR" if outcome.error else "FAIL")
                line = f"{word:5} {fixture.name:{width}}  {outcome.detail}"
                if outcome.transcript is not None and (verbose or not outcome.passed):
                    line += f"  [asr: {outcome.transcript!r}]"
                print(line, file=out, flush=True)
        if broken is None:
            with contextlib.suppress(Exception):
                await session.close()
    finally:
        with contextlib.suppress(Exception):
            await ws_cm.__aexit__(None, None, None)
    return outcomes, summary


def print_summary(summary: Summary, out: TextIO) -> None:
    """The closing lines: per grammar, then totals."""
    groups = ", ".join(f"{g} {ok}/{n}" for g, (ok, n) in sorted(summary.groups.items()))
    if groups:
        print(f"per grammar: {groups}", file=out)
    print(
        f"{summary.passed} passed, {summary.failed} failed, {summary.errors} errors, "
        f"{summary.skipped} skipped; pass rate {summary.pass_rate:.1f} %",
        file=out,
        flush=True,
    )


def _overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--override {item!r}: expected NAME=VALUE")
        value: Any = raw
        with contextlib.suppress(tomllib.TOMLDecodeError):
            value = tomllib.loads(f"v = {raw}")["v"]
        out[key] = value
    return out


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``h2b-test`` command."""
    parser = subparsers.add_parser(
        "h2b-test",
        help="Play a folder of H2B recognition fixtures against a /bots server.",
        description=(
            "Play every .test fixture of FOLDER (the uhlive SDK test-runner format) against a "
            "Stream H2B server with the SDK's Recognizer; print pass/fail per file and a "
            "summary. Exit 0 when the pass rate reaches --min-pass-rate."
        ),
    )
    parser.add_argument("folder", metavar="FOLDER", type=Path, help="folder of .test files")
    parser.add_argument(
        "--url",
        default=None,
        help=f"the /bots WebSocket URL (default: $UHLIVE_API_URL + /bots, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token or access key (default: a token from the token endpoint for "
        "$UHLIVE_API_CLIENT / $UHLIVE_API_SECRET)",
    )
    parser.add_argument(
        "--tests", nargs="+", default=[], metavar="NAME", help="run only these .test files"
    )
    parser.add_argument(
        "--match", action="append", default=[], metavar="GLOB", help="run fixtures matching GLOB"
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="NAME=VALUE",
        help="override a recognition parameter in every fixture",
    )  # fmt: skip
    parser.add_argument(
        "--speed", type=float, default=1.0,
        help="stream at this multiple of real time (default 1; 0 = as fast as possible)",
    )  # fmt: skip
    parser.add_argument("--chunk-ms", type=int, default=60, help="audio chunk length (60)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each server reply (30)"
    )
    parser.add_argument(
        "--min-pass-rate", type=float, default=100.0, metavar="PERCENT",
        help="exit 0 when at least this share of the fixtures pass (default 100)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="show transcripts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the fixtures; return 0 when the pass rate is reached, else 1."""
    _require_sdk()
    if args.speed < 0 or args.chunk_ms <= 0 or args.timeout <= 0:
        raise CommandError("--speed must be >= 0, --chunk-ms and --timeout > 0")
    try:
        fixtures = load_fixtures(args.folder, args.tests, args.match)
    except FixtureError as exc:
        raise CommandError(str(exc)) from None
    if not fixtures:
        raise CommandError(f"{args.folder}: no .test fixtures found")
    overrides = _overrides(args.override)
    url = bots_url(args.url)

    async def main() -> Summary:
        token = args.token
        if not token:
            client = os.environ.get("UHLIVE_API_CLIENT", "")
            secret = os.environ.get("UHLIVE_API_SECRET", "")
            if not secret:
                raise CommandError("no --token and no UHLIVE_API_CLIENT/UHLIVE_API_SECRET")
            token = await _fetch_token(client, secret)
        _, summary = await play_fixtures(
            url, token, fixtures, speed=args.speed, chunk_ms=args.chunk_ms,
            reply_timeout_s=args.timeout, overrides=overrides, out=sys.stdout, verbose=args.verbose,
        )  # fmt: skip
        return summary

    summary = asyncio.run(main())
    print_summary(summary, sys.stdout)
    return 0 if summary.ran and summary.pass_rate >= args.min_pass_rate else EXIT_FAILED
