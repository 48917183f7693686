"""The ``recording_start`` and ``recording_stop`` flow actions (platform API spec §8.1).

``recording_start`` options (all optional):

* ``format`` — ``wav`` (default). ``mp3``/``ogg`` are named by the spec for later releases and
  refused here with a validation error naming the option, like any other value;
* ``duration`` — maximum length in seconds (> 0; absent or 0 = the service maximum, 1 h);
* ``end_of_key`` — ``none`` (default), ``any``, ``*`` or ``#``: that DTMF key ends it;
* ``end_of_silence`` — seconds (≥ 0; 0 = off) of continuous caller silence (energy VAD,
  -45 dBFS) that end it, counted from the start of the recording;
* ``beep_start`` — play a 1000 Hz, 250 ms beep once recording has begun (the beep is in the
  recording's right channel); the action returns after the beep;
* ``on_end_flow_id`` — a flow id, stored on the recording. callbridge has no stored flows
  yet, so nothing runs at the end; the id is kept for the API.

The action answers an unanswered call, starts the recording and continues the flow at once;
the recording runs until ``recording_stop``, a limit, or the end of the call. It sets
``voipbin.recording.id``. A recording that cannot start is logged (and, for a disk error,
published as ``recording_failed``); the flow continues.

``recording_stop`` stops the recording named by ``voipbin.recording.id`` (or, when that is
unset, every recording of the call) and waits until its file is final.

Registration: this module registers itself with :func:`callbridge.flows.actions.action` when
imported; :func:`callbridge.platform.register_adapter_actions` imports it.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import structlog

from callbridge.flows.actions import ActionContext, ActionResult, action
from callbridge.flows.model import NIL_UUID, Action, ActionError
from callbridge.recordings.model import FORMATS, LATER_FORMATS, EndReason
from callbridge.recordings.service import RecordingError, recordings_for

log = structlog.get_logger("callbridge.recordings.actions")

RECORDING_VARIABLE: Final = "voipbin.recording.id"
END_OF_KEY_VALUES: Final = ("none", "any", "*", "#")
#: Upper bound of ``duration`` and ``end_of_silence`` options (seconds).
MAX_OPTION_SECONDS: Final = 24 * 3600


def _seconds(option: dict[str, Any], key: str) -> float | None:
    value = option.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ActionError(f"option '{key}' must be a non-negative number of seconds")
    if value > MAX_OPTION_SECONDS:
        raise ActionError(f"option '{key}' must be at most {MAX_OPTION_SECONDS} s")
    return float(value) or None  # 0 = off / no limit of its own


def parse_start_options(option: dict[str, Any]) -> dict[str, Any]:
    """Validated keyword arguments of :meth:`RecordingService.start`; :class:`ActionError`
    names the first bad option."""
    fmt = option.get("format", "wav") or "wav"
    if fmt in LATER_FORMATS:
        raise ActionError(f"option 'format': {fmt!r} is not supported yet; use 'wav'")
    if fmt not in FORMATS:
        raise ActionError(f"option 'format' must be 'wav', got {fmt!r}")
    key = option.get("end_of_key", "none") or "none"
    if key not in END_OF_KEY_VALUES:
        raise ActionError(f"option 'end_of_key' must be one of none, any, *, #; got {key!r}")
    beep = option.get("beep_start", False)
    if not isinstance(beep, bool):
        raise ActionError("option 'beep_start' must be true or false")
    flow_id: uuid.UUID | None = None
    raw_flow = option.get("on_end_flow_id")
    if raw_flow:
        try:
            flow_id = uuid.UUID(str(raw_flow))
        except ValueError:
            raise ActionError("option 'on_end_flow_id' must be a UUID") from None
        if flow_id == NIL_UUID:
            flow_id = None
    return {
        "duration_seconds": _seconds(option, "duration"),
        "end_of_silence_seconds": _seconds(option, "end_of_silence"),
        "end_of_key": None if key == "none" else key,
        "beep_start": beep,
        "on_end_flow_id": flow_id,
    }


def _check_start(option: dict[str, Any]) -> None:
    parse_start_options(option)


@action("recording_start", _check_start)
async def do_recording_start(ctx: ActionContext, act: Action) -> ActionResult:
    kwargs = parse_start_options(act.option)
    service = recordings_for(ctx.service)
    call_id = str(ctx.live.id)
    if service is None:
        log.warning("recording_start skipped: recordings are not configured", call_id=call_id)
        return ActionResult()
    await ctx.service.answer(ctx.live)
    try:
        rec = await service.start(ctx.live, **kwargs)
    except RecordingError as exc:
        log.warning("recording_start failed", call_id=call_id, error=str(exc))
        return ActionResult()
    ctx.live.variables[RECORDING_VARIABLE] = str(rec.id)
    return ActionResult()


@action("recording_stop")
async def do_recording_stop(ctx: ActionContext, act: Action) -> ActionResult:
    service = recordings_for(ctx.service)
    if service is None:
        return ActionResult()
    current = ctx.live.variables.get(RECORDING_VARIABLE, "")
    ids: list[uuid.UUID] = []
    if current:
        try:
            ids = [uuid.UUID(current)]
        except ValueError:
            ids = []
    else:
        ids = [r.id for r in service.active(ctx.live.id)]
    for rec_id in ids:
        try:
            await service.stop(rec_id, call_id=ctx.live.id, reason=EndReason.STOP)
        except RecordingError as exc:
            log.info("recording_stop: nothing to stop", call_id=str(ctx.live.id), error=str(exc))
    return ActionResult()
