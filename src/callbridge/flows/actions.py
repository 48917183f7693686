"""Flow action handlers (platform API spec §8).

Each handler is ``async (ctx, action) -> ActionResult`` and runs inside the call's flow task, so
a hangup cancels it. This module has the foundation's actions — ``answer``, ``hangup``,
``sleep``, ``echo``, ``beep``, ``stop`` — and the catalogue used to validate stored flows:
in-scope types whose handlers arrive with later features are accepted (and skipped with a
warning until then), later-scope types are accepted and skipped, retired types are refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callbridge.calls.model import HangupReason
from callbridge.flows.model import Action, ActionError, Activeflow
from callbridge.media.tones import tone

if TYPE_CHECKING:
    from callbridge.calls.service import CallService, LiveCall

#: ``beep``: a 1000 Hz tone of 250 ms (platform API spec §8.1).
BEEP_HZ = 1000
BEEP_MS = 250
#: ``echo`` without a duration loops until the call ends; with one, at most this long.
MAX_ECHO_MS = 24 * 3600 * 1000

#: Types of the first release (spec §8.1); handlers not registered yet are skipped.
IN_SCOPE = frozenset(
    {
        "answer",
        "talk",
        "play",
        "sleep",
        "hangup",
        "digits_receive",
        "digits_send",
        "transcribe_start",
        "transcribe_stop",
        "recording_start",
        "recording_stop",
        "variable_set",
        "branch",
        "goto",
        "condition_variable",
        "webhook_send",
        "stop",
        "connect",
        "external_media_start",
        "external_media_stop",
        "echo",
        "beep",
        "rtvbp_bridge",
    }
)
#: Later scope (spec §8.2): accepted in stored flows, skipped with a warning when run.
LATER_SCOPE = frozenset(
    {
        "amd",
        "ai_summary",
        "ai_talk",
        "ai_task",
        "block",
        "call",
        "case_create",
        "condition_call_digits",
        "condition_call_status",
        "condition_datetime",
        "confbridge_join",
        "conference_join",
        "conversation_send",
        "email_send",
        "fetch",
        "fetch_flow",
        "message_send",
        "mute",
        "queue_join",
        "stream_echo",
        "transcribe_recording",
        "empty",
    }
)
#: Retired types are refused (spec §8.2).
RETIRED = frozenset({"agent_call", "chatbot_talk", "hangup_relay"})


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What the runner does next: continue, jump to ``jump_to``, or end the flow."""

    jump_to: uuid.UUID | None = None
    end_flow: bool = False


@dataclass(slots=True)
class ActionContext:
    service: CallService
    live: LiveCall
    flow: Activeflow


Handler = Callable[[ActionContext, Action], Awaitable[ActionResult]]
ACTIONS: dict[str, Handler] = {}
_VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {}


def action(
    name: str, validator: Callable[[dict[str, Any]], None] | None = None
) -> Callable[[Handler], Handler]:
    """Register a handler (and an option validator) for action type ``name``."""

    def register(fn: Handler) -> Handler:
        ACTIONS[name] = fn
        if validator is not None:
            _VALIDATORS[name] = validator
        return fn

    return register


def validate_actions(actions: Sequence[Action]) -> None:
    """Raise :class:`ActionError` naming the first action that cannot run."""
    seen: set[uuid.UUID] = set()
    for pos, act in enumerate(actions):
        where = f"actions[{pos}] ({act.type})"
        if act.type in RETIRED:
            raise ActionError(f"{where}: the action type is retired")
        if act.type not in IN_SCOPE and act.type not in LATER_SCOPE:
            raise ActionError(f"{where}: unknown action type")
        if act.id in seen:
            raise ActionError(f"{where}: duplicate action id {act.id}")
        seen.add(act.id)
        check = _VALIDATORS.get(act.type)
        if check is not None:
            try:
                check(act.option)
            except ActionError as exc:
                raise ActionError(f"{where}: {exc}") from None


def _ms_option(option: dict[str, Any], key: str, *, required: bool, maximum: int) -> int | None:
    value = option.get(key)
    if value is None:
        if required:
            raise ActionError(f"option '{key}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ActionError(f"option '{key}' must be a non-negative number of milliseconds")
    if value > maximum:
        raise ActionError(f"option '{key}' must be at most {maximum} ms")
    return int(value)


# -- answer -----------------------------------------------------------------------------------
@action("answer")
async def do_answer(ctx: ActionContext, act: Action) -> ActionResult:
    await ctx.service.answer(ctx.live)
    return ActionResult()


# -- hangup -----------------------------------------------------------------------------------
def _check_hangup(option: dict[str, Any]) -> None:
    reason = option.get("reason", "normal") or "normal"
    if reason not in {r.value for r in HangupReason if r is not HangupReason.NONE}:
        raise ActionError(f"option 'reason': unknown hangup reason {reason!r}")


@action("hangup", _check_hangup)
async def do_hangup(ctx: ActionContext, act: Action) -> ActionResult:
    reason = HangupReason(act.option.get("reason") or "normal")
    ref = act.option.get("reference_id")
    if ref:
        # Copy another call's hangup reason when that call is known (spec §8.1).
        try:
            other = await ctx.service.store.calls.get(
                ctx.live.call.workspace_id, uuid.UUID(str(ref))
            )
        except ValueError:
            other = None
        if other is not None and other.hangup_reason is not HangupReason.NONE:
            reason = other.hangup_reason
    await ctx.service.hangup(ctx.live, reason)
    return ActionResult(end_flow=True)


# -- stop -------------------------------------------------------------------------------------
@action("stop")
async def do_stop(ctx: ActionContext, act: Action) -> ActionResult:
    return ActionResult(end_flow=True)


# -- sleep ------------------------------------------------------------------------------------
def _check_sleep(option: dict[str, Any]) -> None:
    _ms_option(option, "duration", required=True, maximum=MAX_ECHO_MS)


@action("sleep", _check_sleep)
async def do_sleep(ctx: ActionContext, act: Action) -> ActionResult:
    duration = _ms_option(act.option, "duration", required=True, maximum=MAX_ECHO_MS) or 0
    await ctx.service.clock.sleep(duration / 1000)
    return ActionResult()


# -- echo -------------------------------------------------------------------------------------
def _check_echo(option: dict[str, Any]) -> None:
    _ms_option(option, "duration", required=False, maximum=MAX_ECHO_MS)


@action("echo", _check_echo)
async def do_echo(ctx: ActionContext, act: Action) -> ActionResult:
    """Loop the caller's audio back, frame for frame.

    An inbound tap queues each received frame on the echo producer synchronously on the leg's
    tick (no consumer queue and no task wake-up per frame); the frame is played on the next
    tick. Without ``duration`` the echo lasts until the call ends.
    """
    duration = _ms_option(act.option, "duration", required=False, maximum=MAX_ECHO_MS)
    await ctx.service.answer(ctx.live)
    graph = ctx.live.graph
    producer = graph.producer(f"echo-{act.id}")

    def tap(frame: bytes) -> None:
        if not producer.closed:  # closed when the call ended: nothing left to echo into
            producer.enqueue(frame)

    remove = graph.add_inbound_tap(tap)
    try:
        if duration is None:
            if not graph.closed:
                await graph.wait_closed()
        else:
            await ctx.service.clock.sleep(duration / 1000)
    finally:
        remove()
        producer.close()
    return ActionResult()


# -- beep -------------------------------------------------------------------------------------
@action("beep")
async def do_beep(ctx: ActionContext, act: Action) -> ActionResult:
    await ctx.service.answer(ctx.live)
    producer = ctx.live.graph.producer(f"beep-{act.id}")
    try:
        await producer.play(tone(BEEP_HZ, BEEP_MS))
    finally:
        producer.close()
    return ActionResult()


# -- digits_send ------------------------------------------------------------------------------
#: ``digits_send`` limits (platform API spec §8.1).
DIGITS_MAX = 100
DIGIT_DURATION_MS = (100, 1000)
DIGIT_INTERVAL_MS = (0, 5000)
DTMF_SYMBOLS = frozenset("0123456789ABCD#*")


def _digits_option(option: dict[str, Any]) -> tuple[str, int, int]:
    digits = option.get("digits")
    if not isinstance(digits, str) or not digits:
        raise ActionError("option 'digits' is required (0-9, A-D, # and *)")
    digits = digits.upper()
    bad = next((ch for ch in digits if ch not in DTMF_SYMBOLS), None)
    if bad is not None:
        raise ActionError(f"option 'digits': invalid digit {bad!r} (0-9, A-D, # and *)")
    if len(digits) > DIGITS_MAX:
        raise ActionError(f"option 'digits': at most {DIGITS_MAX} digits")
    values = []
    for key, (low, high), default in (
        ("duration", DIGIT_DURATION_MS, 100),
        ("interval", DIGIT_INTERVAL_MS, 100),
    ):
        value = option.get(key, default)
        if value is None:
            value = default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ActionError(f"option '{key}' must be {low}-{high} ms")
        values.append(int(value))
    return digits, values[0], values[1]


def _check_digits(option: dict[str, Any]) -> None:
    _digits_option(option)


@action("digits_send", _check_digits)
async def do_digits_send(ctx: ActionContext, act: Action) -> ActionResult:
    """Send RFC 4733 key presses on the call's leg (answering it first); returns once sent."""
    digits, duration, interval = _digits_option(act.option)
    await ctx.service.answer(ctx.live)
    await ctx.live.leg.send_dtmf(digits, duration_ms=duration, interval_ms=interval)
    return ActionResult()
