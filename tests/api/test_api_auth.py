"""The credential lookup order of platform API spec §3 (first form present decides)."""

from __future__ import annotations

from starlette.requests import Request

from callbridge.api.auth import presented_credential


def request(query: str = "", headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": "/v1.0/calls", "headers": raw,
             "query_string": query.encode()}  # fmt: skip
    return Request(scope)


def test_lookup_order() -> None:
    cookie = {"Cookie": "token=vb_c1; accesskey=vb_c4"}
    assert presented_credential(request("token=vb_q2&accesskey=vb_q5", cookie)) == "vb_c1"
    bearer = {"Authorization": "Bearer vb_b3", "Cookie": "accesskey=vb_c4"}
    assert presented_credential(request("token=vb_q2", bearer)) == "vb_q2"
    assert presented_credential(request("accesskey=vb_q5", bearer)) == "vb_b3"
    assert presented_credential(request("accesskey=vb_q5", {"Cookie": "accesskey=vb_c4"})) == (
        "vb_c4"
    )
    assert presented_credential(request("accesskey=vb_q5")) == "vb_q5"
    # Only the literal "Bearer " prefix counts; anything else is no credential at all.
    assert presented_credential(request("", {"Authorization": "Basic abc"})) is None
    assert presented_credential(request()) is None
