"""The ``rtvbp_bridge`` flow action (RTVBP spec §6.1, platform API spec §8.1).

Options: ``url`` (required, ``ws://``/``wss://``), ``token`` or ``jwt`` (``key_id``,
``account_id``, ``lifetime``), ``headers`` (extra upgrade headers), ``application_id``,
``metadata``, ``subprotocol`` (``"rtvbp.v1"`` or ``""`` for headerless), ``ping_interval_ms``,
``on_failure`` (``continue`` | ``hangup``); callbridge extensions: ``ca_file`` (extra CA bundle
for ``wss://``), ``request_timeout_ms`` (default 5000).

The action answers an unanswered call, runs a :class:`~callbridge.rtvbp.voice.VoiceBridge`
while the flow waits, and sets ``voipbin.rtvbp.result`` to ``moved``, ``hungup``,
``terminated`` or ``failed``. A move continues the flow at the target action; the handler's
hangup hangs up the call; a failure is logged, published as ``rtvbp_failed`` and then either
continues the flow or hangs up.

Registration: this module registers itself with :func:`callbridge.flows.actions.action` when
imported. :mod:`callbridge.flows.runner` imports it (the runner already depends on the action
registry, and nothing here imports the runner, so there is no cycle).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import structlog

from callbridge.bus.base import make_topic
from callbridge.flows.actions import ActionContext, ActionResult, action
from callbridge.flows.model import Action, ActionError
from callbridge.rtvbp.voice import RESULT_VARIABLE, BridgeOptions, JwtOptions, VoiceBridge

log = structlog.get_logger("callbridge.rtvbp.action")

#: How long a cancelled action waits for the bridge to end its session (§5.2: ≤ 5 s).
CANCEL_GRACE: Final = 6.0


def parse_options(option: dict[str, Any]) -> BridgeOptions:
    """Validate the action's options; :class:`ActionError` names the first bad one."""
    url = option.get("url")
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise ActionError("option 'url' must be a ws:// or wss:// URL")
    token = option.get("token")
    if token is not None and not isinstance(token, str):
        raise ActionError("option 'token' must be a string")
    jwt_opt = option.get("jwt")
    jwt: JwtOptions | None = None
    if jwt_opt is not None:
        if not isinstance(jwt_opt, dict):
            raise ActionError("option 'jwt' must be an object")
        key_id, account = jwt_opt.get("key_id"), jwt_opt.get("account_id")
        lifetime = jwt_opt.get("lifetime", 3600)
        if not isinstance(key_id, str) or not isinstance(account, str) or not key_id or not account:
            raise ActionError("option 'jwt' needs string 'key_id' and 'account_id'")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
            raise ActionError("option 'jwt.lifetime' must be a positive number of seconds")
        jwt = JwtOptions(key_id, account, lifetime)
    if token and jwt:
        raise ActionError("options 'token' and 'jwt' are exclusive")
    headers = option.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ActionError("option 'headers' must be an object of strings")
    app_id = option.get("application_id")
    if app_id is not None and (not isinstance(app_id, str) or not app_id):
        raise ActionError("option 'application_id' must be a non-empty string")
    metadata = option.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ActionError("option 'metadata' must be an object")
    sub = option.get("subprotocol", "rtvbp.v1")
    if sub not in ("rtvbp.v1", ""):
        raise ActionError("option 'subprotocol' must be 'rtvbp.v1' or ''")
    ping = option.get("ping_interval_ms", 0) or 0
    if isinstance(ping, bool) or not isinstance(ping, int) or ping < 0:
        raise ActionError("option 'ping_interval_ms' must be a non-negative integer")
    on_failure = option.get("on_failure", "continue") or "continue"
    if on_failure not in ("continue", "hangup"):
        raise ActionError("option 'on_failure' must be 'continue' or 'hangup'")
    timeout_ms = option.get("request_timeout_ms", 5000)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ActionError("option 'request_timeout_ms' must be a positive integer")
    ca_file = option.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise ActionError("option 'ca_file' must be a path")
    return BridgeOptions(
        url=url,
        token=token or None,
        jwt=jwt,
        headers=dict(headers),
        application_id=app_id,
        metadata=metadata,
        subprotocol=sub,
        ping_interval_ms=ping,
        on_failure="hangup" if on_failure == "hangup" else "continue",
        ca_file=ca_file,
        request_timeout=timeout_ms / 1000,
    )


def _check(option: dict[str, Any]) -> None:
    parse_options(option)


@action("rtvbp_bridge", _check)
async def do_rtvbp_bridge(ctx: ActionContext, act: Action) -> ActionResult:
    options = parse_options(act.option)
    await ctx.service.answer(ctx.live)
    bridge = VoiceBridge(ctx.service, ctx.live, options, action=act, actions=ctx.flow.actions)
    task = asyncio.create_task(bridge.run(), name=f"rtvbp-bridge-{ctx.live.id}")
    try:
        outcome = await asyncio.shield(task)
    except asyncio.CancelledError:
        # The call ended (or the flow was stopped): let the bridge end its session first.
        if ctx.live.is_live:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bridge.stop("stopped"), CANCEL_GRACE)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            outcome = await asyncio.wait_for(task, CANCEL_GRACE)
            ctx.live.variables[RESULT_VARIABLE] = outcome.result
        raise
    ctx.live.variables[RESULT_VARIABLE] = outcome.result
    call_id = str(ctx.live.id)
    if outcome.result == "failed":
        log.warning("rtvbp bridge failed", call_id=call_id, error=outcome.error)
        wid = str(ctx.live.call.workspace_id)
        with contextlib.suppress(Exception):
            await ctx.service.bus.publish(
                make_topic(wid, "call", call_id, "rtvbp_failed"),
                "rtvbp_failed",
                {"call_id": call_id, "action_id": str(act.id), "error": outcome.error or ""},
                workspace_id=wid,
            )
        if options.on_failure == "hangup":
            await ctx.service.hangup(ctx.live)
            return ActionResult(end_flow=True)
        return ActionResult()
    log.info("rtvbp bridge ended", call_id=call_id, result=outcome.result)
    if outcome.result == "hungup":
        if ctx.live.is_live:
            await ctx.service.hangup(ctx.live)
        return ActionResult(end_flow=True)
    if outcome.result == "moved":
        return ActionResult(jump_to=outcome.jump_to)
    return ActionResult()
