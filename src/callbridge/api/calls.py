"""``POST /v1.0/calls`` (platform API spec §6.1): create outgoing calls; ``GET /v1.0/calls/{id}``.

Body: ``source`` (Address, optional), ``destinations`` (Address[], ≥ 1) and either
``flow_id`` or inline ``actions`` (≥ 1; ``flow_id`` wins if both); ``variables`` seed the
flow; unknown fields are ignored. Each destination becomes one outgoing call through the SIP
service (an extension with several registered contacts rings all of them inside one call),
answered 200 with ``{"calls": [Call…], "groupcalls": []}`` while the calls are ``dialing``.

Errors (the JSON envelope): 401 as :mod:`callbridge.api.auth`; 415 for a body that is not
``application/json``; 400 ``INVALID_JSON_BODY``, ``MISSING_REQUEST_PARAMETER``,
``INVALID_REQUEST_PARAMETER`` or ``INVALID_ARGUMENT`` (bad actions, malformed targets);
404 ``FLOW_NOT_FOUND`` (no stored flows yet) and ``RESOURCE_NOT_FOUND`` for a destination
callbridge cannot reach (unknown or unregistered extension, no trunk, an address type that is
not routable yet); 503 when the SIP service is not running. Every destination is checked
before any call is placed. A ``sip`` destination's host may be an IP address or a host name
(RFC 3261 ``hostname``); a name is resolved when the INVITE goes out (RFC 3263), so one that
does not resolve is not an error of the request: the call is created ``dialing`` and ends
``hangup`` with ``hangup_reason`` ``failed``.

``GET /v1.0/calls/{id}`` returns one call object (400 ``INVALID_ID`` for a malformed id, 404
``CALL_NOT_FOUND`` for a missing call or another workspace's).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callbridge.api.auth import require_workspace
from callbridge.auth.model import Workspace
from callbridge.calls.model import Address
from callbridge.calls.serialize import call_to_dict
from callbridge.flows.actions import validate_actions
from callbridge.flows.model import Action, ActionError
from callbridge.platform import Platform
from callbridge.server.errors import ApiError

router = APIRouter(prefix="/v1.0")

MAX_DESTINATIONS = 100
MAX_ACTIONS = 1000
MAX_VARIABLES = 100
MAX_VARIABLES_BYTES = 64 * 1024
MAX_VARIABLE_VALUE_BYTES = 32 * 1024


class AddressModel(BaseModel):
    """An Address (spec §5); normally only ``type`` and ``target`` are set."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, max_length=32)
    target: str = Field(default="", max_length=256)
    target_name: str = Field(default="", max_length=256)
    name: str = Field(default="", max_length=256)
    detail: str = Field(default="", max_length=1024)

    def to_domain(self) -> Address:
        return Address(self.type, self.target, self.target_name, self.name, self.detail)


class CallCreateRequest(BaseModel):
    """The body of ``POST /v1.0/calls``."""

    model_config = ConfigDict(extra="ignore")

    source: AddressModel | None = None
    destinations: list[AddressModel] = Field(min_length=1, max_length=MAX_DESTINATIONS)
    flow_id: uuid.UUID | None = None
    actions: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_ACTIONS)
    variables: dict[str, str] | None = None


@router.post("/calls")
async def create_calls(
    request: Request, workspace: Annotated[Workspace, Depends(require_workspace)]
) -> JSONResponse:
    body = _parse(await _json_body(request))
    actions = _actions(body)
    variables = _variables(body.variables)
    platform: Platform = request.app.state.platform
    telephony = platform.telephony
    if telephony is None:
        raise ApiError(503, "the SIP service is not running (sip_port is 0)")
    from callbridge.telephony.service import NoRoute

    destinations = [d.to_domain() for d in body.destinations]
    for pos, destination in enumerate(destinations):
        try:
            telephony.address_routes(destination, host_names=True)
        except NoRoute as exc:
            raise ApiError(
                404, f"destinations[{pos}]: {exc}", details=[_field(pos, "target", exc)]
            ) from None
        except ValueError as exc:
            raise ApiError(
                400, f"destinations[{pos}]: {exc}", reason="INVALID_REQUEST_PARAMETER",
                details=[_field(pos, "target", exc)],
            ) from None  # fmt: skip
    source = body.source.to_domain() if body.source is not None else None
    calls = []
    for pos, destination in enumerate(destinations):
        try:
            live = await telephony.dial(
                workspace_id=workspace.id, destination=destination, source=source,
                actions=actions, variables=variables,
            )  # fmt: skip
        except NoRoute as exc:  # e.g. the binding expired since the check above
            raise ApiError(404, f"destinations[{pos}]: {exc}") from None
        calls.append(call_to_dict(live.call))
    return JSONResponse({"calls": calls, "groupcalls": []}, status_code=200)


@router.get("/calls/{call_id}")
async def get_call(
    call_id: str, request: Request, workspace: Annotated[Workspace, Depends(require_workspace)]
) -> JSONResponse:
    """One call of the caller's workspace (another workspace's call is 404, never 403)."""
    try:
        uid = uuid.UUID(call_id)
    except ValueError:
        raise ApiError(400, f"call id {call_id!r} is not a UUID", reason="INVALID_ID") from None
    platform: Platform = request.app.state.platform
    call = await platform.store.calls.get(workspace.id, uid)
    if call is None or call.tm_delete is not None:
        raise ApiError(404, f"call {uid} not found", reason="CALL_NOT_FOUND")
    return JSONResponse(call_to_dict(call))


async def _json_body(request: Request) -> Any:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "the request body must be JSON (Content-Type: application/json)")
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON body: {exc}", reason="INVALID_JSON_BODY") from None


def _parse(data: Any) -> CallCreateRequest:
    try:
        return CallCreateRequest.model_validate(data)
    except ValidationError as exc:
        details = []
        reason = "INVALID_REQUEST_PARAMETER"
        for err in exc.errors():
            field = ".".join(str(part) for part in err.get("loc", ())) or "body"
            details.append({"field": field, "issue": str(err.get("msg", ""))})
            if err.get("type") == "missing":
                reason = "MISSING_REQUEST_PARAMETER"
        first = details[0]
        raise ApiError(
            400, f"{first['field']}: {first['issue']}", reason=reason, details=details
        ) from None


def _actions(body: CallCreateRequest) -> list[Action]:
    if body.flow_id is not None:
        # flow_id wins over actions (spec §6.1); stored flows are not served yet.
        raise ApiError(404, f"flow {body.flow_id} not found", reason="FLOW_NOT_FOUND")
    if not body.actions:
        raise ApiError(
            400, "either flow_id or a non-empty actions list is required",
            reason="MISSING_REQUEST_PARAMETER",
            details=[{"field": "actions", "issue": "required when flow_id is absent"}],
        )  # fmt: skip
    try:
        actions = [Action.from_dict(item) for item in body.actions]
        validate_actions(actions)
    except ActionError as exc:
        detail = {"field": "actions", "issue": str(exc)}
        raise ApiError(400, f"actions: {exc}", details=[detail]) from None
    return actions


def _variables(variables: dict[str, str] | None) -> dict[str, str]:
    if not variables:
        return {}
    if len(variables) > MAX_VARIABLES:
        raise ApiError(400, f"variables: at most {MAX_VARIABLES} keys")
    total = 0
    for key, value in variables.items():
        size = len(value.encode())
        if size > MAX_VARIABLE_VALUE_BYTES:
            raise ApiError(400, f"variables.{key}: longer than {MAX_VARIABLE_VALUE_BYTES} bytes")
        total += len(key.encode()) + size
    if total > MAX_VARIABLES_BYTES:
        raise ApiError(400, f"variables: larger than {MAX_VARIABLES_BYTES} bytes in total")
    # Keys starting "voipbin." are reserved and ignored (the call service drops them).
    return dict(variables)


def _field(pos: int, name: str, exc: Exception) -> dict[str, str]:
    return {"field": f"destinations.{pos}.{name}", "issue": str(exc)}


__all__ = ["AddressModel", "CallCreateRequest", "router"]
