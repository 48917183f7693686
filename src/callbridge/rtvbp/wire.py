"""JSON byte rules of RTVBP ``classic.v1`` (RTVBP spec §2.1, §2.2).

* Output is compact JSON, UTF-8, no ASCII escaping, no trailing newline (§2.1).
* Floats are spelled the way Go's ``encoding/json`` spells a float64: integral values without
  ``.0``, the shortest round-trip digits in positional form for ``1e-6 <= |x| < 1e21`` and
  exponent form (``1e-7``, ``1e+21``) outside; NaN and infinities are refused (§2.1).
* Input numbers keep Python's ``int``/``float`` split, except that ``-0`` decodes as the float
  ``-0.0`` so integer fields can reject it (§2.2 "Integers must be exact").

Dict key order is preserved on output; the catalog decides the order (declaration order, or
sorted for free-form maps) before calling :func:`dumps`.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["MAX_SAFE_INTEGER", "JsonDecodeError", "dumps", "go_float", "loads"]

#: Largest integer exactly representable as a float64 (§2.2: integers beyond ±2^53 rejected).
MAX_SAFE_INTEGER = 2**53


class JsonDecodeError(ValueError):
    """The text is not valid JSON (or contains a non-finite number)."""


def go_float(value: float) -> str:
    """Spell ``value`` as Go's ``encoding/json`` does for a float64 (RTVBP spec §2.1)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"RTVBP never emits {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    mag = abs(value)
    # repr() gives the shortest digits that round-trip; re-place the decimal point ourselves.
    text = repr(mag)
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # Position of the decimal point relative to the start of `digits` (repr never writes
    # leading zeros in the integer part except a lone "0").
    if int_part != "0":
        point = len(int_part) + exponent
    else:
        point = exponent - (len(frac_part) - len(frac_part.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    if mag < 1e-6 or mag >= 1e21:
        first, rest = digits[0], digits[1:]
        exp10 = point - 1
        body = first + ("." + rest if rest else "")
        return f"{sign}{body}e{'+' if exp10 >= 0 else '-'}{abs(exp10)}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys are strings, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RTVBP JSON")


def dumps(value: Any) -> str:
    """Compact RTVBP JSON of ``value`` (dict order preserved, Go float spelling)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def _parse_int(text: str) -> int | float:
    return -0.0 if text == "-0" else int(text)


def _parse_constant(name: str) -> Any:
    raise JsonDecodeError(f"non-finite number {name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON text; raise :class:`JsonDecodeError` with the parser's message."""
    try:
        return json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, JsonDecodeError):
            raise
        raise JsonDecodeError(f"invalid JSON: {exc}") from None
