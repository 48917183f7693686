"""``digits_send`` option validation (platform API spec §8.1); the RFC 4733 packets it sends
are checked end to end against baresip in ``tests/telephony/test_telephony_baresip.py``."""

from __future__ import annotations

import pytest

from callbridge.flows.actions import ACTIONS, validate_actions
from callbridge.flows.model import Action, ActionError


def test_digits_send_is_registered_and_accepts_the_spec_ranges() -> None:
    assert "digits_send" in ACTIONS
    validate_actions(
        [
            Action("digits_send", {"digits": "0123456789ABCD#*"}),
            Action("digits_send", {"digits": "abcd", "duration": 100, "interval": 0}),
            Action("digits_send", {"digits": "1" * 100, "duration": 1000, "interval": 5000}),
        ]
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({}, "'digits' is required"),
        ({"digits": ""}, "'digits' is required"),
        ({"digits": 12}, "'digits' is required"),
        ({"digits": "12E"}, "invalid digit 'E'"),
        ({"digits": "1" * 101}, "at most 100"),
        ({"digits": "1", "duration": 99}, "'duration' must be 100-1000"),
        ({"digits": "1", "duration": 1001}, "'duration' must be 100-1000"),
        ({"digits": "1", "duration": True}, "'duration'"),
        ({"digits": "1", "interval": -1}, "'interval' must be 0-5000"),
        ({"digits": "1", "interval": 5001}, "'interval' must be 0-5000"),
    ],
)
def test_digits_send_rejects_bad_options(option: dict[str, object], message: str) -> None:
    with pytest.raises(ActionError, match=message):
        validate_actions([Action("digits_send", option)])
