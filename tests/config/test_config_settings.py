"""Settings: defaults, precedence (file < env < flags), error messages, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbridge.config import ConfigError, Settings, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(
    config_file: Path | None = None, env: dict[str, str] | None = None, **flags: object
) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, env or {}, flags)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    s = load_settings(None, {}, {})
    assert s.host == "127.0.0.1"
    assert s.http_port == 8080
    assert s.data_dir == Path("./var")
    assert s.database == f"sqlite+aiosqlite:///{Path('./var').absolute() / 'callbridge.db'}"
    assert s.log_format == "console" and s.log_level == "info"
    assert s.tls_cert is None and s.tls_key is None and not s.tls_enabled
    assert s.shutdown_grace_seconds == 10.0
    assert s.bootstrap_access_key is None
    assert s.playout_max_lead_seconds == 10.0
    assert s.ws_max_message_bytes == s.http_max_body_bytes == 1024 * 1024
    assert s.cors_origins == ["*"]


def test_database_default_follows_data_dir(tmp_path: Path) -> None:
    s = load_settings(None, {"CALLBRIDGE_DATA_DIR": str(tmp_path / "d")}, {})
    assert s.database == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'callbridge.db'}"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "callbridge.toml",
        'http_port = 1001\nhost = "0.0.0.0"\nlog_level = "debug"\ncors_origins = ["https://a"]\n',
    )
    only_file = load_settings(toml, {}, {})
    assert (only_file.http_port, only_file.host, only_file.log_level) == (1001, "0.0.0.0", "debug")
    assert only_file.cors_origins == ["https://a"]

    env = {
        "CALLBRIDGE_HTTP_PORT": "1002",
        "CALLBRIDGE_HOST": "::1",
        "CALLBRIDGE_CORS_ORIGINS": "x, y",
    }
    with_env = load_settings(toml, env, {})
    assert (with_env.http_port, with_env.host, with_env.log_level) == (1002, "::1", "debug")
    assert with_env.cors_origins == ["x", "y"]

    with_flags = load_settings(toml, env, {"http_port": "1003", "host": None})
    assert (with_flags.http_port, with_flags.host) == (1003, "::1")  # None = flag not given


def test_config_file_from_env_and_flag_wins(tmp_path: Path) -> None:
    env_file = write(tmp_path / "env.toml", "http_port = 2001\n")
    flag_file = write(tmp_path / "flag.toml", "http_port = 2002\n")
    assert load_settings(None, {"CALLBRIDGE_CONFIG": str(env_file)}, {}).http_port == 2001
    assert load_settings(flag_file, {"CALLBRIDGE_CONFIG": str(env_file)}, {}).http_port == 2002


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("flag", "--http-port: expected an integer between 1 and 65535, got 'abc'"),
        ("env", "CALLBRIDGE_HTTP_PORT: expected an integer between 1 and 65535, got 'abc'"),
        ("file", "callbridge.toml: http_port: expected an integer between 1 and 65535, got 'abc'"),
    ],
)
def test_error_names_option_as_written(
    where: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if where == "flag":
        assert error_of(http_port="abc") == expected
    elif where == "env":
        assert error_of(env={"CALLBRIDGE_HTTP_PORT": "abc"}) == expected
    else:
        write(tmp_path / "callbridge.toml", 'http_port = "abc"\n')
        assert error_of(Path("callbridge.toml")) == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"http_port": "0"}, "--http-port: expected an integer between 1 and 65535, got '0'"),
        (
            {"http_port": "65536"},
            "--http-port: expected an integer between 1 and 65535, got '65536'",
        ),
        ({"log_format": "xml"}, "--log-format: expected one of console, json, got 'xml'"),
        (
            {"log_level": "loud"},
            "--log-level: expected one of debug, info, warning, error, got 'loud'",
        ),
        (
            {"shutdown_grace_seconds": "-1"},
            "--shutdown-grace: expected a non-negative number, got '-1'",
        ),
        (
            {"shutdown_grace_seconds": "soon"},
            "--shutdown-grace: expected a non-negative number, got 'soon'",
        ),
        (
            {"playout_max_lead_seconds": "0"},
            "--playout-max-lead-seconds: expected a positive number, got '0'",
        ),
        (
            {"ws_max_message_bytes": "0"},
            "--ws-max-message-bytes: expected a positive integer, got '0'",
        ),
        ({"host": ""}, "--host: expected a non-empty string, got ''"),
    ],
)
def test_flag_errors(flags: dict[str, object], expected: str) -> None:
    assert error_of(**flags) == expected


def test_log_level_is_case_insensitive() -> None:
    assert load_settings(None, {"CALLBRIDGE_LOG_LEVEL": "WARNING"}, {}).log_level == "warning"


def test_several_problems_on_one_line() -> None:
    message = error_of(env={"CALLBRIDGE_HTTP_PORT": "x"}, log_format="yaml")
    assert message == (
        "CALLBRIDGE_HTTP_PORT: expected an integer between 1 and 65535, got 'x'; "
        "--log-format: expected one of console, json, got 'yaml'"
    )


def test_unknown_keys_with_suggestions(tmp_path: Path) -> None:
    toml = write(tmp_path / "cb.toml", "http_prot = 1\n")
    assert error_of(toml) == f"{toml}: http_prot: unknown key (did you mean http_port?)"
    assert error_of(env={"CALLBRIDGE_DATADIR": "x"}) == (
        "CALLBRIDGE_DATADIR: unknown variable (did you mean CALLBRIDGE_DATA_DIR?)"
    )
    assert error_of(env={"CALLBRIDGE_ZZZ": "x"}) == "CALLBRIDGE_ZZZ: unknown variable"


def test_tooling_variables_are_ignored() -> None:
    env = {"CALLBRIDGE_TEST_PG_URL": "postgresql://x/y", "PATH": "/bin", "OTHER_HTTP_PORT": "x"}
    assert load_settings(None, env, {}).http_port == 8080


def test_config_file_problems(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert error_of(missing) == f"--config: cannot read {str(missing)!r}: no such file or directory"
    assert error_of(env={"CALLBRIDGE_CONFIG": str(missing)}).startswith(
        "CALLBRIDGE_CONFIG: cannot read"
    )
    broken = write(tmp_path / "broken.toml", "http_port = = 1\n")
    assert error_of(broken).startswith(f"{broken}: invalid TOML: ")


def test_tls_pair_and_files(tmp_path: Path) -> None:
    cert = write(tmp_path / "c.pem", "x")
    key = write(tmp_path / "k.pem", "x")
    assert (
        error_of(tls_cert=str(cert)) == "--tls-cert: needs --tls-key as well (give both or neither)"
    )
    assert error_of(env={"CALLBRIDGE_TLS_KEY": str(key)}) == (
        "CALLBRIDGE_TLS_KEY: needs CALLBRIDGE_TLS_CERT as well (give both or neither)"
    )
    nowhere = tmp_path / "nope.pem"
    assert (
        error_of(tls_cert=str(nowhere), tls_key=str(key))
        == f"--tls-cert: no such file: {str(nowhere)!r}"
    )
    s = load_settings(None, {}, {"tls_cert": str(cert), "tls_key": str(key)})
    assert s.tls_enabled and s.tls_cert == cert


def test_database_url_validation() -> None:
    assert error_of(database="nonsense").startswith(
        "--database: expected a database URL like sqlite+aiosqlite:///"
    )
    message = error_of(env={"CALLBRIDGE_DATABASE": "mysql://root:hunter2@db/x"})
    assert message.startswith("CALLBRIDGE_DATABASE: expected a database URL")
    assert "hunter2" not in message and "mysql://root:********@db/x" in message
    for ok in ("sqlite:///x.db", "postgres://u@h/d", "postgresql+asyncpg://u:p@h:5/d"):
        assert load_settings(None, {}, {"database": ok}).database == ok


def test_bootstrap_key_shape_error_never_echoes_value() -> None:
    message = error_of(env={"CALLBRIDGE_BOOTSTRAP_ACCESS_KEY": "secret-but-wrong"})
    assert message.startswith("CALLBRIDGE_BOOTSTRAP_ACCESS_KEY: expected 'vb_'")
    assert "secret-but-wrong" not in message


def test_empty_env_value_unsets_optional_key() -> None:
    assert (
        load_settings(None, {"CALLBRIDGE_BOOTSTRAP_ACCESS_KEY": ""}, {}).bootstrap_access_key
        is None
    )


def test_masked_dict(tmp_path: Path) -> None:
    cert = write(tmp_path / "c.pem", "x")
    key = write(tmp_path / "k.pem", "x")
    preset = "vb_" + "A" * 32
    s = load_settings(
        None,
        {
            "CALLBRIDGE_BOOTSTRAP_ACCESS_KEY": preset,
            "CALLBRIDGE_DATABASE": "postgresql+asyncpg://cb:s3cr3t@db:5432/cb",
        },
        {"tls_cert": str(cert), "tls_key": str(key)},
    )
    assert s.bootstrap_access_key is not None
    assert s.bootstrap_access_key.get_secret_value() == preset
    masked = s.masked_dict()
    assert masked["bootstrap_access_key"] == "********"
    assert masked["database"] == "postgresql+asyncpg://cb:********@db:5432/cb"
    assert masked["tls_key"] == str(key)  # a path, not a secret
    assert preset not in repr(s) and preset not in str(masked)
    assert "s3cr3t" not in str(masked)
    assert set(masked) == set(Settings.model_fields)


def test_settings_are_immutable() -> None:
    s = load_settings(None, {}, {})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is internal
        s.http_port = 1  # type: ignore[misc]
