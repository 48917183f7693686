"""The RTVBP codec against every vendored vector: golden bytes, payload cases, envelope frames,
Go float spellings, the catalog manifest and the negotiation table (RTVBP spec §2, §3, §8.2)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from rtvbp_harness import ROOT, golden_files, load, semantic_frame

from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.envelope import (
    ABSENT,
    EnvelopeError,
    ErrorObject,
    Event,
    Request,
    Response,
    decode,
    encode,
)
from callbridge.rtvbp.negotiation import (
    PROFILE_PREFERENCE,
    NegotiationError,
    parse_offer,
    select_profile,
)
from callbridge.rtvbp.wire import JsonDecodeError, dumps, go_float, loads


def _payload_type(path: Path) -> type[c.Payload]:
    rel = path.relative_to(ROOT / "golden")
    stem = path.stem.split("-", 1)[0]
    if rel.parts[-2] == "events":
        return c.EVENTS[stem].data
    method, _, side = stem.rpartition(".")
    op = c.OPERATIONS[method]
    return op.request if side == "request" else op.response


PAYLOAD_GOLDEN = golden_files("payloads") + golden_files("events") + golden_files("variants")


def test_golden_inventory() -> None:
    assert len(golden_files("")) == 48
    assert len(PAYLOAD_GOLDEN) == 38
    assert len(golden_files("envelope")) == 10


@pytest.mark.parametrize("path", PAYLOAD_GOLDEN, ids=lambda p: str(p.relative_to(ROOT)))
def test_golden_payload_round_trip(path: Path) -> None:
    raw = path.read_bytes()
    assert not raw.endswith(b"\n")
    model = _payload_type(path).from_json(loads(raw))
    assert model.to_text().encode() == raw


@pytest.mark.parametrize("path", golden_files("envelope"), ids=lambda p: str(p.relative_to(ROOT)))
def test_golden_envelope_round_trip(path: Path) -> None:
    raw = path.read_bytes()
    assert encode(decode(raw)).encode() == raw


def _payload_cases() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "payloads").glob("*.json")):
        spec = load(f"payloads/{path.name}")
        for side in ("request", "response"):
            for case in spec[side]["valid"]:
                out.append((spec[side]["schema"], "valid", case))
            for case in spec[side]["invalid"]:
                out.append((spec[side]["schema"], "invalid", case))
    return out


PAYLOAD_CASES = _payload_cases()


def test_payload_vectors_cover_every_operation() -> None:
    methods = {p.stem for p in (ROOT / "payloads").glob("*.json")}
    assert methods == set(c.OPERATIONS)
    assert len(PAYLOAD_CASES) >= 40


@pytest.mark.parametrize(
    ("schema", "kind", "case"),
    PAYLOAD_CASES,
    ids=[f"{s}-{k}-{case['name']}" for s, k, case in PAYLOAD_CASES],
)
def test_payload_vector(schema: str, kind: str, case: dict[str, Any]) -> None:
    if kind == "valid":
        model = c.decode_payload(schema, case["json"])
        assert model.to_text() == case["json"]
        return
    expected = {"decode": c.PayloadDecodeError, "validation": c.ValidationError}[case["error"]]
    with pytest.raises(expected):
        c.decode_payload(schema, case["json"])


FRAMES = load("envelope/classic.v1/frames.json")


@pytest.mark.parametrize("case", FRAMES["encode"], ids=lambda k: k["name"])
def test_frames_encode(case: dict[str, Any]) -> None:
    assert encode(semantic_frame(case["frame"])) == case["bytes"]


@pytest.mark.parametrize("case", FRAMES["decode"], ids=lambda k: k["name"])
def test_frames_decode(case: dict[str, Any]) -> None:
    assert decode(case["bytes"]) == semantic_frame(case["frame"])


@pytest.mark.parametrize("case", FRAMES["invalid"], ids=lambda k: k["name"])
def test_frames_invalid(case: dict[str, Any]) -> None:
    assert case["error"] == "decode"
    with pytest.raises(EnvelopeError):
        decode(case["bytes"])


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '"x"',
        '{"version":1,"id":"a","method":"m"}',
        '{"version":"2","id":"a","method":"m"}',
        '{"version":"1","method":"m"}',
        '{"version":"1","id":"","method":"m"}',
        '{"version":"1","id":7,"method":"m"}',
        '{"version":"1","event":"e"}',
        '{"version":"1","method":""}',
        '{"version":"1","response":"r","error":{"code":0,"message":"x"}}',
        '{"version":"1","response":"r","error":{"code":500}}',
        '{"version":"1","response":"r","error":{"code":500,"message":""}}',
        '{"version":"1","response":"r","error":{"code":true,"message":"x"}}',
        '{"version":"1","response":"r","error":"boom"}',
        '{"version":"1","response":"r","result":NaN}',
        b"\xff\xfe",
    ],
)
def test_envelope_rejects(text: str | bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(text)


def test_envelope_details() -> None:
    # Unknown keys ignored, input key order irrelevant, error:null = no error.
    frame = decode('{"x":1,"method":"ping","id":"a","version":"1","params":{"t0":5,"zz":1}}')
    assert frame == Request("a", "ping", {"t0": 5, "zz": 1})
    ok = decode('{"version":"1","response":"r","result":{},"error":null}')
    assert isinstance(ok, Response) and ok.ok and ok.result == {}
    # Both result and error: the error wins, and both survive a round trip.
    both = decode('{"version":"1","response":"r","result":{},"error":{"code":-1,"message":"m"}}')
    assert isinstance(both, Response) and not both.ok and both.result == {}
    # Event with no data: key omitted on output.
    assert encode(Event("e1", "call.hangup")) == '{"version":"1","id":"e1","event":"call.hangup"}'
    # UTF-8 unescaped; Go's escaped spelling decodes to the same text.
    assert (
        encode(Event("e", "x", {"t": "<é>"}))
        == '{"version":"1","id":"e","event":"x","data":{"t":"<é>"}}'
    )
    assert decode('{"version":"1","id":"e","event":"x","data":{"t":"\\u003c"}}') == Event(
        "e", "x", {"t": "<"}
    )
    with pytest.raises(EnvelopeError):
        ErrorObject(0, "zero")
    with pytest.raises(EnvelopeError):
        ErrorObject(1, "")
    assert repr(ABSENT) == "ABSENT"


AUTHORITY = load("authority/go-float64-boundaries.json")


@pytest.mark.parametrize("case", AUTHORITY, ids=lambda k: k["name"])
def test_go_float_authority(case: dict[str, Any]) -> None:
    value = struct.unpack(">d", bytes.fromhex(case["bits"]))[0]
    if case.get("rejects"):
        with pytest.raises(ValueError):
            go_float(value)
        return
    assert go_float(value) == case["json"]
    assert dumps({"v": value}) == f'{{"v":{case["json"]}}}'


def test_wire_json_rules() -> None:
    assert dumps({"b": [True, False, None, 1, 2.5, "ü"], "a": {}}) == (
        '{"b":[true,false,null,1,2.5,"ü"],"a":{}}'
    )
    assert dumps((1, 2)) == "[1,2]"
    with pytest.raises(TypeError):
        dumps({1: 2})
    with pytest.raises(TypeError):
        dumps(object())
    neg_zero = loads("-0")
    assert isinstance(neg_zero, float) and str(neg_zero) == "-0.0"
    with pytest.raises(JsonDecodeError):
        loads("Infinity")
    with pytest.raises(JsonDecodeError):
        loads("[" * 100_000)


@pytest.mark.parametrize(
    ("schema", "text", "message"),
    [
        ("PingRequest", '{"t0":1.5}', "$.t0: must be an integer"),
        ("PingRequest", '{"t0":-0}', "$.t0: must be an integer"),
        ("PingRequest", '{"t0":true}', "$.t0: must be an integer"),
        ("PingRequest", '{"t0":9007199254740993}', "$.t0: must be within ±2^53"),
        ("PingRequest", "{}", "$.t0: is required"),
        ("PingRequest", '{"t0":null}', "$.t0: is required"),
        ("PingRequest", "[]", "$: must be an object"),
        (
            "SessionInitializeRequest",
            '{"application":{"id":"a"},"call":{"id":"c",'
            '"session_id":"s","from":"f","to":"t"},"audio_codec_offerings":[]}',
            "$.metadata: is required (may be null)",
        ),
        (
            "SessionInitializeRequest",
            '{"application":{"id":"a"},"call":{"id":"c",'
            '"session_id":"s","from":"f"},"audio_codec_offerings":[],"metadata":null}',
            "$.call.to: is required",
        ),
        (
            "SessionInitializeRequest",
            '{"application":{"id":"a"},"call":{"id":"c",'
            '"session_id":"s","from":"f","to":"t"},"audio_codec_offerings":{},"metadata":null}',
            "$.audio_codec_offerings: must be an array",
        ),
        (
            "SessionInitializeRequest",
            '{"application":{"id":"a"},"call":{"id":"c",'
            '"session_id":"s","from":"f","to":"t"},"audio_codec_offerings":[{"id":1}],'
            '"metadata":null}',
            "$.audio_codec_offerings[0].id: must be a string",
        ),
        (
            "SessionInitializeRequest",
            '{"application":{"id":"a"},"call":{"id":"c",'
            '"session_id":"s","from":"f","to":"t"},"audio_codec_offerings":[],"metadata":[]}',
            "$.metadata: must be an object",
        ),
        ("SessionGetRequest", '{"keys":["a",1]}', "$.keys: must be an array of strings"),
        (
            "DtmfEvent",
            '{"seq":-1,"pressed_at":1,"released_at":2,"digit":"1"}',
            "$.seq: must be >= 0",
        ),
        (
            "DtmfEvent",
            '{"seq":0,"pressed_at":3,"released_at":2,"digit":"1"}',
            "$.released_at: must be >= pressed_at",
        ),
        (
            "AudioInfoItem",
            '{"bytes":1,"bytes_per_second":"x","bytes_total":1}',
            "$.bytes_per_second: must be a number",
        ),
        ("SessionGetResponse", "[]", "$: must be an object"),
    ],
)
def test_validation_messages(schema: str, text: str, message: str) -> None:
    with pytest.raises(c.ValidationError) as err:
        c.decode_payload(schema, text)
    assert str(err.value) == message


def test_presence_classes_and_sorting() -> None:
    # opt: null reads as absent and is omitted on output.
    assert c.decode_payload("PingRequest", '{"t0":5,"rtt":null}').to_text() == '{"t0":5}'
    # opt "any": null is a value and is kept.
    assert c.decode_payload("PingRequest", '{"t0":5,"data":null}').to_text() == (
        '{"t0":5,"data":null}'
    )
    # Free-form maps are written with sorted keys, recursively.
    model = c.SessionSetRequest({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": 0}})
    assert model.to_text() == '{"data":{"a":{"c":0,"d":[{"y":2,"z":1}]},"b":1}}'
    assert c.SessionGetResponse({"z": 1, "a": 2}).to_text() == '{"a":2,"z":1}'
    # Floats in audio.info are integral-without-.0; ints are accepted for floats.
    item = c.AudioInfoItem.from_json({"bytes": 1, "bytes_per_second": 12800, "bytes_total": 3})
    assert item.bytes_per_second == 12800.0 and item.to_text().count("12800,") == 1
    c.L16_8000_1.validate()
    with pytest.raises(c.ValidationError):
        c.DtmfEvent(0, 5, 4, "1").validate()
    assert c.replace(c.L16_8000_1, channels=2).channels == 2


def test_catalog_matches_manifest() -> None:
    manifest = load("manifests/babelforce.v1.catalog.json")
    assert {op["method"] for op in manifest["operations"]} == set(c.OPERATIONS)
    assert {ev["name"] for ev in manifest["events"]} == set(c.EVENTS)
    for op in manifest["operations"]:
        ours = c.OPERATIONS[op["method"]]
        roles = {"voice", "application"} if op["handledBy"] == "both" else {op["handledBy"]}
        assert ours.handled_by == roles
        assert ours.terminal is op["terminal"]
        assert op["request"]["$ref"].rsplit("/", 1)[1] == ours.request.SCHEMA
        assert op["response"]["$ref"].rsplit("/", 1)[1] == ours.response.SCHEMA
        for rej in op["rejections"]:
            assert (rej["code"], rej["message"]) == c.TERMINATE_REJECTION
    for ev in manifest["events"]:
        assert c.EVENTS[ev["name"]].emitted_by == ev["emittedBy"]
        assert ev["data"]["$ref"].rsplit("/", 1)[1] == c.EVENTS[ev["name"]].data.SCHEMA
    assert set(manifest["schemas"]) == set(c.SCHEMAS)
    for name, schema in manifest["schemas"].items():
        fields = [f.wire for f in c.SCHEMAS[name].FIELDS]
        assert fields == list(schema.get("properties", {})), name
        required = {f.wire for f in c.SCHEMAS[name].FIELDS if f.presence != "opt"}
        assert required == set(schema.get("required", [])), name


NEGOTIATION = load("profiles/negotiation.json")


@pytest.mark.parametrize("case", NEGOTIATION["valid"], ids=lambda k: k["name"])
def test_negotiation_valid(case: dict[str, Any]) -> None:
    selection = select_profile(case["offered"], PROFILE_PREFERENCE)
    assert selection.token == case["selectedToken"]
    assert selection.profile == case["effectiveProfile"]


@pytest.mark.parametrize("case", NEGOTIATION["invalid"], ids=lambda k: k["name"])
def test_negotiation_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(NegotiationError) as err:
        select_profile(case["offered"], PROFILE_PREFERENCE)
    assert err.value.error_class == case["error"]


def test_negotiation_bearer_carrier_and_parsing() -> None:
    assert parse_offer(["rtvbp.v1, bearer.c2VjcmV0", "x"]) == ["rtvbp.v1", "bearer.c2VjcmV0", "x"]
    sel = select_profile(["rtvbp.v1", "bearer.c2VjcmV0"])
    assert (sel.token, sel.bearer) == ("rtvbp.v1", "secret")
    with pytest.raises(NegotiationError):
        select_profile(["bearer.c2VjcmV0"])
    with pytest.raises(NegotiationError) as err:
        select_profile(["rtvbp.v1", "bearer.!!!"])
    assert err.value.error_class == "invalid-token"
    # Only rtvbp.v1 served: the demo token alone is rejected.
    with pytest.raises(NegotiationError):
        select_profile(["rtvbp.demo.v1"])
