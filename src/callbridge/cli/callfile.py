"""``callbridge call-file``: run one incoming call whose caller is a WAV file, end to end.

The call goes through the real platform — the store of ``serve`` (so it stays visible through
the API afterwards), the event bus, the call service and the activeflow runner, on the
platform's real :class:`~callbridge.media.clock.SystemClock` — with a
:class:`~callbridge.legs.file_leg.FileLeg` as the caller:

* ``--play FILE`` is what the caller says (any WAV callbridge reads; silence without it);
* ``--record FILE`` receives everything the platform played to the caller, from answer to
  hangup, as an 8 kHz mono PCM16 WAV (written empty first, so an unanswered call leaves a valid
  empty file);
* ``--dtmf "AT:DIGIT[:MS],…"`` presses keys ``AT`` seconds after answer, held ``MS``
  milliseconds (default 100);
* ``--hangup-after SECONDS`` makes the caller hang up that long after answer.

Output (stdout): the bootstrap access key when the store was empty (once, like ``serve``),
one line per bus event of the call as it happens (``  +0.000s call_created status=ringing``),
then one summary line (``call <id>: hangup normal (local), 3.28 s, recorded 3.26 s to x.wav``).

Exit codes: 0 once the call has ended; 2 with one ``callbridge: …`` line on stderr for bad
input (actions, WAV files, ``--dtmf``, ``--hangup-after``, unknown workspace, configuration),
detected before the call starts; 130 on SIGINT and 143 on SIGTERM, after hanging the call up.

Logging goes to stderr at ``warning`` unless a log level is configured (flag, environment or
file), so the event lines are not drowned in the platform's info logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop

from callbridge.bus.base import Event, Subscription, topic_matches
from callbridge.calls.model import Address, Call, Direction, HangupReason
from callbridge.cli.common import CommandError, settings_from_args
from callbridge.config import Settings, flag_name
from callbridge.flows.actions import validate_actions
from callbridge.flows.model import Action, ActionError
from callbridge.legs.base import validate_dtmf
from callbridge.legs.file_leg import FileLeg, ScheduledDigit
from callbridge.media.constants import SAMPLE_RATE
from callbridge.media.wav import WavFormatError, read_wav, write_wav
from callbridge.server.signals import StopSignalHandler

if TYPE_CHECKING:
    from callbridge.platform import Platform

#: The flow run when neither ``--actions`` nor ``--actions-file`` is given.
DEFAULT_ACTIONS: tuple[dict[str, Any], ...] = (
    {"type": "answer"},
    {"type": "beep"},
    {"type": "echo", "option": {"duration": 3000}},
    {"type": "hangup"},
)
#: Wall time a call gets beyond its flow's sleep/echo durations (and ``--hangup-after``)
#: before it is hung up regardless.
CAP_MARGIN_SECONDS = 60.0
#: Longest key press ``--dtmf`` accepts.
MAX_DTMF_MS = 10_000
#: The settings that matter to a single call; their flags mirror ``serve``'s.
CALL_FILE_SETTINGS: tuple[str, ...] = ("data_dir", "database", "log_format", "log_level")
_METAVARS = {"data_dir": "DIR", "database": "URL", "log_format": "FORMAT", "log_level": "LEVEL"}
#: Log level of ``call-file`` when none is configured.
QUIET_LOG_LEVEL = "warning"
EXIT_OK = 0
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``call-file`` command."""
    parser = subparsers.add_parser(
        "call-file",
        help="Run one call with a WAV file as the caller; print its events.",
        description=(
            "Run one incoming call through the platform with a scripted caller: it plays "
            "--play, presses --dtmf keys, records what it hears to --record and may hang up "
            "after --hangup-after seconds. The call's events are printed as they happen and "
            "the call is stored like any other. Logs go to stderr at level warning unless a "
            "log level is configured."
        ),
    )
    parser.add_argument("--play", metavar="FILE", type=Path, help="WAV the caller plays.")
    parser.add_argument(
        "--record", metavar="FILE", type=Path, help="WAV file receiving what the caller hears."
    )
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument(
        "--actions",
        metavar="JSON",
        help="The flow as a JSON array of actions (default: answer, beep, echo 3 s, hangup).",
    )
    actions.add_argument(
        "--actions-file", metavar="FILE", type=Path, help="Read the JSON array from FILE."
    )
    parser.add_argument(
        "--dtmf",
        metavar="SCHEDULE",
        help='Keys the caller presses: "AT:DIGIT[:MS],…", AT in seconds after answer.',
    )
    parser.add_argument(
        "--hangup-after",
        metavar="SECONDS",
        type=float,
        help="The caller hangs up this many seconds after answer.",
    )
    parser.add_argument(
        "--workspace-id", metavar="UUID", help="Workspace of the call (default: the first)."
    )
    _add_settings_flags(parser)
    parser.set_defaults(handler=run)


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """``--config`` and the flags of :data:`CALL_FILE_SETTINGS`, spelt and stored exactly as
    :func:`callbridge.cli.common.add_settings_flags` does, so ``settings_from_args`` reads
    them (the server-only flags are left out)."""
    group = parser.add_argument_group("configuration (flags override CALLBRIDGE_* and the file)")
    group.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        default=None,
        help="TOML configuration file (default: $CALLBRIDGE_CONFIG, else none).",
    )
    fields = Settings.model_fields
    for key in CALL_FILE_SETTINGS:
        group.add_argument(
            flag_name(key),
            dest=f"setting_{key}",
            metavar=_METAVARS[key],
            default=None,
            help=fields[key].description,
        )


@dataclass(frozen=True, slots=True)
class CallFileRequest:
    """Everything ``call-file`` was asked to do, validated before the platform starts."""

    actions: list[Action]
    play: bytes
    play_label: str
    record: Path | None
    dtmf: list[ScheduledDigit]
    hangup_after: float | None
    workspace_id: uuid.UUID | None
    cap_seconds: float


def run(args: argparse.Namespace) -> int:
    """Validate the input (raising :class:`CommandError` on bad input), then run the call on
    a uvloop event loop; return the exit code (see the module docstring)."""
    # One scripted call needs no SIP listener (and must not clash with a running server's).
    settings = settings_from_args(args).model_copy(update={"sip_port": 0})
    request = build_request(args)
    # Load the platform and server modules (run_call imports them) before the event loop
    # starts, so importing them does not block the running loop; the rest of the CLI never
    # loads them.
    import callbridge.platform
    import callbridge.server.run  # noqa: F401

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_call(settings, request))


# -- input ----------------------------------------------------------------------------------
def build_request(args: argparse.Namespace) -> CallFileRequest:
    """Turn the parsed flags into a :class:`CallFileRequest`.

    Raises :class:`CommandError` naming the flag for invalid JSON or actions, an unreadable
    or invalid WAV, an unwritable ``--record`` file, a bad ``--dtmf`` schedule, a negative or
    non-finite ``--hangup-after`` and a malformed ``--workspace-id``. ``--record`` is created
    (as an empty WAV) here, so a bad path fails before the call starts.
    """
    actions = parse_actions(_actions_text(args))
    hangup_after: float | None = args.hangup_after
    if hangup_after is not None and not (math.isfinite(hangup_after) and hangup_after >= 0):
        raise CommandError(f"--hangup-after: must be a non-negative number, got {hangup_after}")
    dtmf = parse_dtmf(args.dtmf) if args.dtmf is not None else []
    workspace_id: uuid.UUID | None = None
    if args.workspace_id is not None:
        try:
            workspace_id = uuid.UUID(args.workspace_id)
        except ValueError:
            raise CommandError(f"--workspace-id: {args.workspace_id!r} is not a UUID") from None
    play = b""
    play_label = "silence"
    if args.play is not None:
        play = _read_play(args.play)
        play_label = args.play.name
    if args.record is not None:
        try:
            # Opened here, not by write_wav: the stdlib writer leaks a noisy half-made object
            # when it cannot open the path itself.
            with args.record.open("wb") as fh:
                write_wav(fh, b"")
        except OSError as exc:
            raise CommandError(
                f"--record: cannot write {str(args.record)!r}: {_reason(exc)}"
            ) from None
    flow_seconds = sum(_duration_seconds(a) for a in actions)
    cap = max(flow_seconds, hangup_after or 0.0) + CAP_MARGIN_SECONDS
    return CallFileRequest(
        actions=actions,
        play=play,
        play_label=play_label,
        record=args.record,
        dtmf=dtmf,
        hangup_after=hangup_after,
        workspace_id=workspace_id,
        cap_seconds=cap,
    )


def _actions_text(args: argparse.Namespace) -> tuple[str, str] | None:
    """(flag, JSON text) of the flow, or ``None`` for the default flow."""
    if args.actions is not None:
        return "--actions", str(args.actions)
    path: Path | None = args.actions_file
    if path is None:
        return None
    try:
        return "--actions-file", path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"--actions-file: cannot read {str(path)!r}: {_reason(exc)}") from None
    except UnicodeDecodeError:
        raise CommandError(f"--actions-file: {str(path)!r} is not UTF-8 text") from None


def parse_actions(source: tuple[str, str] | None) -> list[Action]:
    """The validated action list from ``(flag, JSON text)``; the default flow for ``None``.

    Raises :class:`CommandError` (``<flag>: …``) for invalid JSON, a non-array, and any
    :class:`ActionError` (whose message names the offending action).
    """
    if source is None:
        raw: Any = [dict(a) for a in DEFAULT_ACTIONS]
        flag = "--actions"
    else:
        flag, text = source
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{flag}: invalid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise CommandError(f"{flag}: expected a JSON array of actions")
    actions: list[Action] = []
    try:
        for pos, item in enumerate(raw):
            try:
                actions.append(Action.from_dict(item))
            except ActionError as exc:
                raise ActionError(f"actions[{pos}]: {exc}") from None
        validate_actions(actions)
    except ActionError as exc:
        raise CommandError(f"{flag}: {exc}") from None
    return actions


def parse_dtmf(schedule: str) -> list[ScheduledDigit]:
    """Parse ``"AT:DIGIT[:MS],…"`` (e.g. ``"1.0:5,1.5:#:200"``) into scheduled key presses.

    ``AT`` is a non-negative number of seconds after answer, ``DIGIT`` one of ``0-9 * # A-D``
    and ``MS`` the press duration (1…10000 ms, default 100). Raises :class:`CommandError`
    naming the offending entry.
    """
    digits: list[ScheduledDigit] = []
    for entry in schedule.split(","):
        entry = entry.strip()
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise CommandError(f"--dtmf: {entry!r}: expected AT:DIGIT or AT:DIGIT:MS")
        try:
            at = float(parts[0])
        except ValueError:
            raise CommandError(f"--dtmf: {entry!r}: {parts[0]!r} is not a number") from None
        if not (math.isfinite(at) and at >= 0):
            raise CommandError(f"--dtmf: {entry!r}: the time must be a non-negative number")
        digit = parts[1].strip()
        if len(digit) != 1:
            raise CommandError(f"--dtmf: {entry!r}: expected exactly one key, got {digit!r}")
        try:
            digit = validate_dtmf(digit)
        except ValueError as exc:
            raise CommandError(f"--dtmf: {entry!r}: {exc}") from None
        duration_ms = 100
        if len(parts) == 3:
            try:
                duration_ms = int(parts[2])
            except ValueError:
                raise CommandError(
                    f"--dtmf: {entry!r}: {parts[2]!r} is not a whole number of ms"
                ) from None
            if not 1 <= duration_ms <= MAX_DTMF_MS:
                raise CommandError(f"--dtmf: {entry!r}: the duration must be 1…{MAX_DTMF_MS} ms")
        digits.append(ScheduledDigit(at, digit, duration_ms))
    return digits


def _read_play(path: Path) -> bytes:
    try:
        return read_wav(path)
    except WavFormatError as exc:
        raise CommandError(f"--play: {str(path)!r}: {exc}") from None
    except OSError as exc:
        raise CommandError(f"--play: cannot read {str(path)!r}: {_reason(exc)}") from None


def _duration_seconds(action: Action) -> float:
    """Seconds a ``sleep``/``echo`` action asks for (validated already); 0 otherwise."""
    if action.type not in ("sleep", "echo"):
        return 0.0
    value = action.option.get("duration")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) / 1000


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


# -- the call -------------------------------------------------------------------------------
class _Signals(StopSignalHandler):
    """SIGINT/SIGTERM during the run: remembered, and ``received`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.received = asyncio.Event()
        self.signal: signal.Signals | None = None

    def on_signal(self, sig: signal.Signals) -> None:
        if self.signal is None:
            self.signal = sig
        self.received.set()

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signal is signal.SIGTERM else EXIT_SIGINT


async def run_call(settings: Settings, request: CallFileRequest) -> int:
    """Start the platform, run the call, print its events and a summary, stop the platform.

    Returns 0 when the call ended (by its flow, the caller, or the time cap), 130/143 after a
    SIGINT/SIGTERM hung it up. Raises :class:`CommandError` when the platform cannot start or
    ``request.workspace_id`` names no workspace. The platform is always stopped before
    returning.
    """
    # Imported here so the rest of the CLI does not load the server (run() preloads them).
    from callbridge.observability.logging import configure_logging
    from callbridge.platform import Platform, PlatformStartError
    from callbridge.server.run import announce_bootstrap
    from callbridge.store import StoreError

    explicit_level = "log_level" in settings.model_fields_set
    configure_logging(
        settings.log_format, settings.log_level if explicit_level else QUIET_LOG_LEVEL
    )
    signals = _Signals()
    signals.install()
    try:
        platform = Platform(settings)
        try:
            await platform.start()
        except StoreError as exc:
            text = str(exc)
            raise CommandError(
                text if text.startswith("database") else f"database: {text}"
            ) from None
        except PlatformStartError as exc:
            raise CommandError(str(exc)) from None
        try:
            announce_bootstrap(platform)
            workspace_id = await _workspace(platform, request.workspace_id)
            if signals.received.is_set():
                return signals.exit_code
            return await _run(platform, workspace_id, request, signals)
        finally:
            await platform.stop(settings.shutdown_grace_seconds)
    finally:
        signals.remove()


async def _workspace(platform: Platform, wanted: uuid.UUID | None) -> uuid.UUID:
    """``wanted`` if it names a live workspace (else :class:`CommandError`); by default the
    first workspace, which bootstrap guarantees exists."""
    if wanted is not None:
        if await platform.store.workspaces.get(wanted) is None:
            raise CommandError(f"--workspace-id: no workspace {wanted}")
        return wanted
    first = await platform.store.workspaces.first()
    if first is None:  # pragma: no cover - bootstrap creates one on an empty store
        raise CommandError("the store has no workspace")
    return first.id


async def _run(
    platform: Platform, workspace_id: uuid.UUID, request: CallFileRequest, signals: _Signals
) -> int:
    leg = FileLeg(
        "call-file",
        platform.clock,
        play=request.play,
        record_path=request.record,
        dtmf=request.dtmf,
        hangup_after=request.hangup_after,
        memory_record_seconds=0.0,
    )
    sub: Subscription = platform.bus.subscribe(f"ws.{workspace_id}")
    try:
        live = await platform.calls.start_call(
            workspace_id=workspace_id,
            direction=Direction.INCOMING,
            source=Address(
                type="extension", target="call-file", name="file caller", detail=request.play_label
            ),
            destination=Address(type="extension", target="callbridge"),
            leg=leg,
            actions=request.actions,
            metadata={"origin": "callbridge call-file"},
        )
        printer = _EventPrinter(live.call)
        printing = asyncio.create_task(printer.follow(sub), name="call-file-events")
        try:
            outcome = await _wait_for_end(live.ended, signals.received, request.cap_seconds)
            if outcome == "signal":
                print(f"callbridge: interrupted; hanging up call {live.id}", file=sys.stderr)
                await platform.calls.hangup(live, HangupReason.NORMAL)
            elif outcome == "cap":
                print(
                    f"callbridge: call {live.id} still running after "
                    f"{request.cap_seconds:.1f} s; hanging it up",
                    file=sys.stderr,
                    flush=True,
                )
                await platform.calls.hangup(live, HangupReason.NORMAL)
            # Let the flow and the call's worker finish their last writes and events.
            await platform.drain(platform.settings.shutdown_grace_seconds)
        finally:
            printing.cancel()
            await asyncio.gather(printing, return_exceptions=True)
            while sub.qsize():
                printer.show(await sub.get())
        print(_summary(live.call, request.record), flush=True)
    finally:
        sub.close()
    return signals.exit_code if signals.received.is_set() else EXIT_OK


async def _wait_for_end(ended: asyncio.Event, stop: asyncio.Event, cap_seconds: float) -> str:
    """``"ended"``, ``"signal"`` or ``"cap"``: whichever happens first (ended wins ties)."""
    ended_task = asyncio.create_task(ended.wait())
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait(
            {ended_task, stop_task}, timeout=cap_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (ended_task, stop_task):
            task.cancel()
        await asyncio.gather(ended_task, stop_task, return_exceptions=True)
    if ended.is_set():
        return "ended"
    if stop.is_set():
        return "signal"
    return "cap"


class _EventPrinter:
    """Prints the bus events of one call (its call, activeflow and DTMF events), one line
    each, timed from the call's first event."""

    def __init__(self, call: Call) -> None:
        wid = str(call.workspace_id)
        self.call_id = str(call.id)
        self._prefixes = [f"ws.{wid}.call.{call.id}"]
        if call.activeflow_id is not None:
            self._prefixes.append(f"ws.{wid}.activeflow.{call.activeflow_id}")
        self._t0: float | None = None

    async def follow(self, sub: Subscription) -> None:
        """Print events until cancelled (or the subscription closes)."""
        async for event in sub:
            self.show(event)

    def show(self, event: Event) -> None:
        """Print ``event`` if it belongs to the call."""
        if not self._belongs(event):
            return
        if self._t0 is None:
            self._t0 = event.ts
        detail = describe_event(event)
        line = f"  +{event.ts - self._t0:.3f}s {event.type}"
        print(f"{line} {detail}" if detail else line, flush=True)

    def _belongs(self, event: Event) -> bool:
        if any(topic_matches(p, event.topic) for p in self._prefixes):
            return True
        return event.data.get("call_id") == self.call_id


def describe_event(event: Event) -> str:
    """The interesting fields of a call, activeflow or DTMF event as ``key=value`` words."""
    data = event.data
    if event.type == "dtmf_received":
        return f"digit={data.get('digit')} duration={data.get('duration')}ms"
    if event.type.startswith("activeflow_"):
        if data.get("status") == "ended":
            return "status=ended"
        current = data.get("current_action")
        if isinstance(current, dict) and current.get("type"):
            return f"action={current['type']}"
        return f"status={data.get('status')}"
    if event.type == "call_hangup":
        return f"reason={data.get('hangup_reason')} by={data.get('hangup_by')}"
    if event.type.startswith("call_"):
        return f"status={data.get('status')}"
    return ""


def _summary(call: Call, record: Path | None) -> str:
    """``call <id>: hangup <reason> (<by>), <duration> s, <recording>``."""
    status = call.status.value
    if call.hangup_reason.value:
        status += f" {call.hangup_reason.value} ({call.hangup_by.value})"
    end = call.tm_hangup or call.tm_update
    seconds = (end - call.tm_create).total_seconds()
    if record is None:
        recording = "not recorded (--record FILE keeps what the caller heard)"
    else:
        heard = _wav_seconds(record)
        recording = (
            f"recorded {heard:.2f} s to {record}" if heard is not None else f"recorded to {record}"
        )
    return f"call {call.id}: {status}, {seconds:.2f} s, {recording}"


def _wav_seconds(path: Path) -> float | None:
    """Length of the recording (as written by the file leg), or ``None`` if unreadable."""
    with contextlib.suppress(OSError, wave.Error, EOFError), wave.open(str(path), "rb") as w:
        return w.getnframes() / (w.getframerate() or SAMPLE_RATE)
    return None


__all__ = [
    "DEFAULT_ACTIONS",
    "CallFileRequest",
    "build_request",
    "describe_event",
    "parse_actions",
    "parse_dtmf",
    "register",
    "run",
    "run_call",
]
