"""Action parsing, validation and variable substitution (pure units)."""

from __future__ import annotations

import uuid

import pytest

from callbridge.flows.actions import validate_actions
from callbridge.flows.model import NIL_UUID, Action, ActionError
from callbridge.flows.variables import string_view, substitute


def test_action_from_dict_generates_ids_and_reads_next_id() -> None:
    a = Action.from_dict({"type": "sleep", "option": {"duration": 10}})
    assert isinstance(a.id, uuid.UUID) and a.next_id is None
    target = uuid.uuid4()
    b = Action.from_dict({"id": str(NIL_UUID), "type": "answer", "next_id": str(target)})
    assert b.id != NIL_UUID and b.next_id == target
    c = Action.from_dict({"type": "answer", "next_id": str(NIL_UUID)})
    assert c.next_id is None
    assert Action.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("sleep", "JSON object"),
        ({"option": {}}, "type"),
        ({"type": ""}, "type"),
        ({"type": "sleep", "option": []}, "option"),
        ({"type": "sleep", "id": "nope"}, "UUID"),
    ],
)
def test_action_from_dict_rejects_malformed(data: object, message: str) -> None:
    with pytest.raises(ActionError, match=message):
        Action.from_dict(data)


def test_validate_accepts_in_scope_and_later_scope() -> None:
    validate_actions(
        [
            Action("answer"),
            Action("sleep", {"duration": 100}),
            Action("talk", {"text": "hi"}),
            Action("amd"),
            Action("echo"),
            Action("hangup", {"reason": "busy"}),
        ]
    )


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ([Action("agent_call")], "retired"),
        ([Action("dance")], "unknown action type"),
        ([Action("sleep")], "'duration' is required"),
        ([Action("sleep", {"duration": -1})], "non-negative"),
        ([Action("sleep", {"duration": "10"})], "non-negative"),
        ([Action("sleep", {"duration": True})], "non-negative"),
        ([Action("echo", {"duration": 10**12})], "at most"),
        ([Action("hangup", {"reason": "bored"})], "unknown hangup reason"),
    ],
)
def test_validate_names_the_bad_action(actions: list[Action], message: str) -> None:
    with pytest.raises(ActionError, match=message) as info:
        validate_actions(actions)
    assert "actions[0]" in str(info.value)


def test_validate_rejects_duplicate_ids() -> None:
    a = Action("answer")
    with pytest.raises(ActionError, match="duplicate"):
        validate_actions([a, Action("answer", id=a.id)])


def test_substitute() -> None:
    variables = {"voipbin.call.id": "c1", "name": "Ada"}
    assert substitute("Hi ${name}, call ${voipbin.call.id}", variables) == "Hi Ada, call c1"
    assert substitute("x${unknown}y", variables) == "xy"
    assert substitute("${ not a var }", variables) == "${ not a var }"
    assert string_view("s") == "s"
    assert string_view({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert string_view(3) == "3"
