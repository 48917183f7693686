"""Extensions (softphones that register with callbridge) and SIP trunks."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

#: SIP user names callbridge accepts for extensions (unreserved URI characters only).
USERNAME_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
TRANSPORTS = ("udp", "tcp")
DEFAULT_REGISTER_EXPIRES = 3600
#: Accepted range of a trunk's asked registration expiry (seconds).
REGISTER_EXPIRES_RANGE = (60, 86400)


@dataclass(slots=True)
class Extension:
    """A SIP account on callbridge's registrar: ``sip:<username>@<sip_domain>``."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    username: str
    password: str
    tm_create: datetime
    tm_update: datetime
    name: str = ""
    detail: str = ""
    tm_delete: datetime | None = None

    def __repr__(self) -> str:  # never show the password
        return f"Extension(id={self.id}, username={self.username!r})"


@dataclass(slots=True)
class Trunk:
    """A SIP trunk: where calls to numbers go, and a source trusted for inbound calls."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    host: str
    port: int
    transport: str
    tm_create: datetime
    tm_update: datetime
    username: str = ""
    password: str = ""
    detail: str = ""
    tm_delete: datetime | None = None
    #: Keep a binding at the trunk (REGISTER with digest as ``username``), refreshed.
    register: bool = False
    #: The expiry asked for in each REGISTER (the trunk may grant another one).
    register_expires: int = DEFAULT_REGISTER_EXPIRES

    def __repr__(self) -> str:
        return f"Trunk(id={self.id}, name={self.name!r}, host={self.host!r}:{self.port})"
