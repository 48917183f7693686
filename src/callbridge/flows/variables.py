"""Flow variables and ``${name}`` substitution (platform API spec §7).

Unknown variables substitute as the empty string. Names are ``[A-Za-z0-9_.-]+``; anything else
between ``${`` and ``}`` is left untouched, so literal text such as ``${ not a var }`` survives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")

#: Keys a client may not set through ``variables`` (reserved for the platform).
RESERVED_PREFIX = "voipbin."


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Replace every ``${name}`` in ``text`` with ``variables[name]`` (``""`` when unknown)."""
    return _VAR.sub(lambda m: variables.get(m.group(1), ""), text)


def string_view(value: Any) -> str:
    """How a JSON value reads inside a text option: strings verbatim, others compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
