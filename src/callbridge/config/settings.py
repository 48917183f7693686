"""Process configuration: one flat :class:`Settings` model and its three sources.

Sources, weakest first: a TOML file (``--config FILE`` or ``CALLBRIDGE_CONFIG``), environment
variables ``CALLBRIDGE_<KEY>`` (the key upper-cased) and command-line flags ``--<key-with-dashes>``.
A stronger source replaces a key wholesale (lists are not merged).

Every key is one field of :class:`Settings`; adding a key is adding one ``Field`` line with its
description (the description is the ``--help`` text and the documentation of the key). The
field's ``json_schema_extra={"flag": "--name"}`` overrides the flag spelling used in messages.

Errors are reported as :class:`ConfigError` whose message names the option the way the user
wrote it: ``--http-port: …``, ``CALLBRIDGE_HTTP_PORT: …`` or ``callbridge.toml: http_port: …``.

Relative paths (``data_dir``, ``tls_cert``, ``tls_key``) are relative to the working directory,
whichever source they come from.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

ENV_PREFIX = "CALLBRIDGE_"
CONFIG_ENV = "CALLBRIDGE_CONFIG"
# Variables with these prefixes belong to tooling (the test suite's service URLs), not to the
# server, so they are neither settings nor "unknown variable" errors.
ENV_IGNORED_PREFIXES = ("CALLBRIDGE_TEST_",)

MIB = 1024 * 1024

# Key names whose string values are secrets (masked by ``Settings.masked_dict``).
_SECRET_NAME = re.compile(r"token|secret|password|passwd|key", re.IGNORECASE)
# ``scheme://user:password@host`` — the password part of a URL.
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*:)(?P<pw>[^@]*)(?=@)")
_URL_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
# The drivers callbridge.store accepts (it pins the async driver itself).
_DB_DRIVERS = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg")
# Same shape callbridge.auth accepts for a preset key.
_ACCESS_KEY = re.compile(r"vb_[A-Za-z0-9_-]{20,256}")
MASK = "********"


class ConfigError(Exception):
    """Invalid configuration. ``str(error)`` is one line naming the offending option(s).

    ``problems`` holds one message per problem (the message joins them with ``"; "``).
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


LogFormat = Literal["console", "json"]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]


class Settings(BaseModel):
    """Effective configuration of one callbridge process (immutable once loaded)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", min_length=1, description="Address the HTTP server binds.")
    http_port: int = Field(8080, ge=1, le=65535, description="TCP port of the HTTP server.")
    data_dir: Path = Field(
        Path("./var"), description="Directory for the database and recordings (created on start)."
    )
    database: str = Field(
        "",
        description="Database URL (sqlite+aiosqlite:///… or postgresql+asyncpg://…); "
        "default: SQLite file callbridge.db in data_dir.",
    )
    bus: str = Field(
        "",
        description="Event bus: empty for the in-process bus (one process), or a NATS URL "
        "(nats://host:4222) shared by every process of a cluster.",
    )
    bus_namespace: str = Field(
        "callbridge",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="NATS subject prefix of callbridge's events (one per installation).",
    )
    log_format: LogFormat = Field("console", description="Log format: console or json.")
    log_level: LogLevel = Field("info", description="Log level: debug, info, warning or error.")
    tls_cert: Path | None = Field(None, description="TLS certificate file (PEM); needs tls_key.")
    tls_key: Path | None = Field(None, description="TLS private key file (PEM); needs tls_cert.")
    shutdown_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="Seconds live requests, WebSockets and calls get to end on SIGINT/SIGTERM.",
        json_schema_extra={"flag": "--shutdown-grace"},
    )
    bootstrap_access_key: SecretStr | None = Field(
        None, description="Access key (vb_…) registered for the first workspace on first start."
    )
    playout_max_lead_seconds: float = Field(
        10.0, gt=0, description="Most audio a client may queue ahead of playout, in seconds."
    )
    ws_max_message_bytes: int = Field(
        MIB, ge=1, description="Largest WebSocket message accepted, in bytes."
    )
    http_max_body_bytes: int = Field(
        MIB, ge=1, description="Largest HTTP request body accepted, in bytes."
    )
    cors_origins: list[str] = Field(
        ["*"], description="Origins allowed by CORS (comma-separated in env/flags); * = any."
    )
    gc_gen0_threshold: int = Field(
        10_000,
        ge=0,
        description="Garbage collector gen-0 threshold after start-up (0 = Python's default).",
    )
    # -- SIP / telephony (callbridge.telephony) --
    sip_port: int = Field(
        5060, ge=0, le=65535, description="UDP and TCP port of the SIP service; 0 = SIP off."
    )
    sip_host: str = Field(
        "", description="Address SIP and RTP bind and advertise (default: the host key)."
    )
    sip_domain: str = Field(
        "", description="SIP domain (digest realm) of extensions (default: the SIP host)."
    )
    rtp_ports: str = Field(
        "20000-20999", description="RTP port range, like 20000-20999 (even RTP, odd RTCP)."
    )
    sip_trust: list[str] = Field(
        [],
        description="CIDRs whose SIP requests need no digest (comma-separated), e.g. 127.0.0.0/8.",
    )
    sip_default_flow: str = Field(
        "",
        description="JSON flow actions for inbound SIP calls (default: answer, beep, echo).",
    )
    sip_digest_algorithms: list[Literal["SHA-256", "MD5"]] = Field(
        ["SHA-256", "MD5"], description="Digest algorithms offered, in order (SHA-256, MD5)."
    )
    sip_nonce_secret: SecretStr | None = Field(
        None, description="Digest nonce secret (default: generated once into the data dir)."
    )
    # -- RTVBP (callbridge.rtvbp): defaults of the rtvbp_bridge flow action --
    rtvbp_token: SecretStr | None = Field(
        None, description="Bearer token of rtvbp_bridge actions that set none."
    )
    rtvbp_jwt_keys_dir: Path | None = Field(
        None, description="Directory of <key_id>.pem RS256 private keys for rtvbp_bridge jwt."
    )

    @field_validator("bus")
    @classmethod
    def _check_bus(cls, value: str) -> str:
        if value and not value.startswith(("nats://", "tls://")):
            raise PydanticCustomError(
                "bus_url",
                "expected empty (in-process) or a NATS URL like nats://127.0.0.1:4222, got {shown}",
                {"shown": repr(mask_url(value))},
            )
        return value

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str) -> str:
        if value == "":
            return value  # filled in from data_dir by _derive_database
        match = _URL_SCHEME.match(value)
        driver = match.group("scheme").lower() if match else ""
        if driver not in _DB_DRIVERS:
            raise PydanticCustomError(
                "database_url",
                "expected a database URL like sqlite+aiosqlite:///path/to/file.db or "
                "postgresql+asyncpg://user:password@host/dbname, got {shown}",
                {"shown": repr(mask_url(value))},
            )
        return value

    @field_validator("bootstrap_access_key")
    @classmethod
    def _check_access_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _ACCESS_KEY.fullmatch(value.get_secret_value()):
            # The value is never repeated: it is a secret even when malformed.
            raise PydanticCustomError(
                "access_key_shape",
                "expected 'vb_' followed by 20 to 256 characters from [A-Za-z0-9_-]",
                {},
            )
        return value

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise PydanticCustomError(
                "file_missing", "no such file: {path}", {"path": repr(str(value))}
            )
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        cleaned = [origin.strip() for origin in value if origin.strip()]
        if not cleaned:
            raise PydanticCustomError("origins_empty", "expected at least one origin", {})
        return cleaned

    @field_validator("rtp_ports")
    @classmethod
    def _check_rtp_ports(cls, value: str) -> str:
        lo, sep, hi = value.partition("-")
        if not (sep and lo.strip().isdigit() and hi.strip().isdigit()):
            raise PydanticCustomError(
                "rtp_ports", "expected a port range like 20000-20999, got {v}", {"v": repr(value)}
            )
        first, last = int(lo), int(hi)
        if not 1024 <= first < last <= 65535:
            raise PydanticCustomError(
                "rtp_ports",
                "expected ports within 1024-65535, first < last, got {v}",
                {"v": repr(value)},
            )
        return f"{first}-{last}"

    @field_validator("sip_trust")
    @classmethod
    def _check_trust(cls, value: list[str]) -> list[str]:
        import ipaddress

        cleaned = [item.strip() for item in value if item.strip()]
        for item in cleaned:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise PydanticCustomError(
                    "cidr", "expected CIDRs like 127.0.0.0/8, got {v}", {"v": repr(item)}
                ) from None
        return cleaned

    @field_validator("sip_default_flow")
    @classmethod
    def _check_flow(cls, value: str) -> str:
        if not value.strip():
            return ""
        from callbridge.flows.actions import validate_actions
        from callbridge.flows.model import Action, ActionError

        try:
            data = json.loads(value)
            if not isinstance(data, list):
                raise ActionError("expected a JSON list of actions")
            validate_actions([Action.from_dict(item) for item in data])
        except (json.JSONDecodeError, ActionError) as exc:
            raise PydanticCustomError("flow", "invalid actions: {e}", {"e": str(exc)}) from None
        return value

    @model_validator(mode="after")
    def _derive_and_pair(self) -> Settings:
        if self.database == "":
            derived = f"sqlite+aiosqlite:///{self.data_dir.absolute() / 'callbridge.db'}"
            # The model is frozen; this is its own validation step, before anyone sees it.
            object.__setattr__(self, "database", derived)
        if self.sip_host == "":
            object.__setattr__(self, "sip_host", self.host)
        if self.sip_domain == "":
            object.__setattr__(self, "sip_domain", self.sip_host)
        if (self.tls_cert is None) != (self.tls_key is None):
            present, missing = (
                ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            )
            raise PydanticCustomError(
                "tls_pair",
                "needs {missing} as well (give both or neither)",
                {"present": present, "missing": missing},
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        """True when the HTTP server speaks HTTPS (``tls_cert`` and ``tls_key`` are set)."""
        return self.tls_cert is not None and self.tls_key is not None

    def masked_dict(self) -> dict[str, Any]:
        """All keys as JSON-compatible values with secrets replaced by ``"********"``.

        Masked: ``SecretStr`` fields, string values of keys whose name contains token, secret,
        password or key (path-valued keys such as ``tls_key`` name a file, not a secret, and are
        shown), and the password of URL values (``postgresql://user:********@host/db``). Unset
        secrets stay ``None`` so "not set" remains visible.
        """
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                out[name] = None
            elif isinstance(value, SecretStr):
                out[name] = MASK
            elif isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, str) and _SECRET_NAME.search(name):
                out[name] = MASK
            elif isinstance(value, str):
                out[name] = mask_url(value)
            elif isinstance(value, list):
                out[name] = list(value)
            else:
                out[name] = value
        return out


def mask_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``********``."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url, count=1)


def flag_name(key: str) -> str:
    """The command-line spelling of settings key ``key`` (``http_port`` → ``--http-port``)."""
    extra = Settings.model_fields[key].json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("flag"), str):
        return str(extra["flag"])
    return "--" + key.replace("_", "-")


def env_name(key: str) -> str:
    """The environment variable of ``key`` (``http_port`` → ``CALLBRIDGE_HTTP_PORT``)."""
    return ENV_PREFIX + key.upper()


def load_settings(
    config_file: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, object],
) -> Settings:
    """Build the effective :class:`Settings`: TOML file < environment < flags.

    ``config_file`` (the ``--config`` flag) wins over ``env["CALLBRIDGE_CONFIG"]``; without
    either no file is read. ``flags`` maps settings keys (``"http_port"``) to values; ``None``
    values mean "flag not given". String values from the environment and flags are parsed
    like TOML values would be (``"8080"`` → 8080, lists comma-separated or as a JSON array);
    an empty environment value unsets an optional key.

    Raises :class:`ConfigError` naming each bad option as written (see module docstring),
    including unknown TOML keys and unknown ``CALLBRIDGE_*`` variables, with a suggestion.
    """
    fields = Settings.model_fields
    values: dict[str, object] = {}
    origin: dict[str, str] = {}  # key -> how the user spelled the option that set it
    problems: list[str] = []

    file_path: Path | None = None
    file_label = ""
    if config_file is not None:
        file_path, file_label = config_file, "--config"
    elif env.get(CONFIG_ENV):
        file_path, file_label = Path(env[CONFIG_ENV]), CONFIG_ENV
    if file_path is not None:
        for key, value in _read_toml(file_path, file_label).items():
            if key not in fields:
                problems.append(f"{file_path}: {key}: unknown key{_suggest(key, list(fields))}")
                continue
            values[key] = value
            origin[key] = f"{file_path}: {key}"

    env_keys = {env_name(key): key for key in fields}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        if var.startswith(ENV_IGNORED_PREFIXES):
            continue
        if var not in env_keys:
            # Compared without the common prefix, which would make everything look alike.
            known = {
                name.removeprefix(ENV_PREFIX).lower(): name for name in [*env_keys, CONFIG_ENV]
            }
            close = difflib.get_close_matches(var.removeprefix(ENV_PREFIX).lower(), known, n=1)
            hint = f" (did you mean {known[close[0]]}?)" if close else ""
            problems.append(f"{var}: unknown variable{hint}")
            continue
        key = env_keys[var]
        raw = env[var]
        if raw == "" and _is_optional(fields[key]):
            values[key] = None
        else:
            values[key] = _from_text(fields[key], raw)
        origin[key] = var

    for key, value in flags.items():
        if key not in fields:
            raise KeyError(f"load_settings: unknown settings key {key!r} in flags")
        if value is None:
            continue
        values[key] = _from_text(fields[key], value) if isinstance(value, str) else value
        origin[key] = flag_name(key)

    if problems:
        raise ConfigError(problems)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc, values, origin)) from None


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError([f"{label}: cannot read {str(path)!r}: {reason}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _annotation_args(info: FieldInfo) -> tuple[Any, bool]:
    """(inner annotation without ``| None``, whether ``None`` is allowed)."""
    annotation: Any = info.annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _is_optional(info: FieldInfo) -> bool:
    return _annotation_args(info)[1]


def _from_text(info: FieldInfo, raw: str) -> object:
    """Turn an env/flag string into the shape a TOML file would have given for this key."""
    inner, _ = _annotation_args(info)
    if typing.get_origin(inner) is list:
        stripped = raw.strip()
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError:
                return raw  # reported as "expected a list …, got '…'"
            return parsed
        return [part.strip() for part in raw.split(",")]
    return raw


def _bounds(info: FieldInfo) -> tuple[object | None, object | None, bool, bool]:
    lower: object | None = None
    upper: object | None = None
    lower_strict = upper_strict = False
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            lower = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            lower, lower_strict = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            upper = meta.le
        elif isinstance(meta, annotated_types.Lt):
            upper, upper_strict = meta.lt, True
    return lower, upper, lower_strict, upper_strict


def _expectation(info: FieldInfo) -> str:
    """What a valid value of this key looks like, for "expected …, got …" messages."""
    inner, _ = _annotation_args(info)
    if typing.get_origin(inner) is Annotated:
        inner = typing.get_args(inner)[0]
    if typing.get_origin(inner) is Literal:
        text = "one of " + ", ".join(str(choice) for choice in typing.get_args(inner))
    elif inner is bool:
        text = "true or false"
    elif inner in (int, float):
        noun = "an integer" if inner is int else "a number"
        lower, upper, lower_strict, upper_strict = _bounds(info)
        if lower is not None and upper is not None and not (lower_strict or upper_strict):
            text = f"{noun} between {lower} and {upper}"
        elif upper is None and (
            (lower, lower_strict) == (0, True)
            or (inner is int and (lower, lower_strict) == (1, False))
        ):
            text = f"a positive {noun.split()[-1]}"
        elif upper is None and (lower, lower_strict) == (0, False):
            text = f"a non-negative {noun.split()[-1]}"
        else:
            parts = []
            if lower is not None:
                parts.append(f"{'greater than' if lower_strict else 'at least'} {lower}")
            if upper is not None:
                parts.append(f"{'less than' if upper_strict else 'at most'} {upper}")
            text = noun + (" " + " and ".join(parts) if parts else "")
    elif inner is Path:
        text = "a file or directory path"
    elif typing.get_origin(inner) is list:
        text = "a list of strings (comma-separated)"
    elif inner is SecretStr or inner is str:
        text = "a non-empty string" if info.metadata else "a string"
    else:  # pragma: no cover - a new key type needs a phrase here
        text = f"a value of type {inner}"
    return text


# Error types whose own message is already the explanation (raised by our validators).
_OWN_MESSAGE_TYPES = {
    "access_key_shape",
    "bus_url",
    "database_url",
    "file_missing",
    "origins_empty",
    "tls_pair",
}


def _shown(key: str, value: object) -> str:
    """``repr(value)`` for an error message, masked when the key holds a secret."""
    inner, _ = _annotation_args(Settings.model_fields[key])
    secret_name = _SECRET_NAME.search(key) is not None and inner is not Path
    if (
        isinstance(value, SecretStr)
        or inner is SecretStr
        or (secret_name and isinstance(value, str))
    ):
        return repr(MASK)
    if isinstance(value, str):
        return repr(mask_url(value))
    return repr(value)


def _describe_errors(
    exc: ValidationError, values: Mapping[str, object], origin: Mapping[str, str]
) -> list[str]:
    fields = Settings.model_fields
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        key = str(loc[0]) if loc else ""
        if error["type"] == "tls_pair":
            ctx = error.get("ctx") or {}
            present, missing = str(ctx["present"]), str(ctx["missing"])
            where = origin.get(present, present)
            wanted = _spell_like(where, missing)
            problems.append(f"{where}: needs {wanted} as well (give both or neither)")
            continue
        if key not in fields:  # pragma: no cover - defensive; every key error has a field loc
            problems.append(error["msg"])
            continue
        where = origin.get(key, key)
        if error["type"] in _OWN_MESSAGE_TYPES:
            problems.append(f"{where}: {error['msg']}")
        else:
            value = values.get(key, fields[key].default)
            problems.append(
                f"{where}: expected {_expectation(fields[key])}, got {_shown(key, value)}"
            )
    return problems


def _spell_like(where: str, key: str) -> str:
    """Spell ``key`` in the same style as the option in ``where`` (flag, env var or file key)."""
    if where.startswith("--"):
        return flag_name(key)
    if where.startswith(ENV_PREFIX):
        return env_name(key)
    return key
