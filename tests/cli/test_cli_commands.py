"""The ``callbridge`` console script as a real subprocess: version, config show, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

CALLBRIDGE = Path(sys.executable).parent / "callbridge"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLBRIDGE_") or k.startswith("CALLBRIDGE_TEST_")
    }
    base.update(env or {})
    return subprocess.run(
        [str(CALLBRIDGE), *args],
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_version() -> None:
    from callbridge import __version__

    result = run("version")
    assert result.returncode == 0
    assert result.stdout == f"callbridge {__version__}\n"
    assert result.stderr == ""


def test_no_command_prints_help_and_fails() -> None:
    result = run()
    assert result.returncode == 2
    assert "serve" in result.stderr and "version" in result.stderr


def test_config_show_toml_defaults(tmp_path: Path) -> None:
    result = run("config", "show", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = tomllib.loads(result.stdout)
    assert shown["http_port"] == 8080
    assert shown["host"] == "127.0.0.1"
    assert (
        shown["database"] == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'var' / 'callbridge.db'}"
    )
    assert "bootstrap_access_key" not in shown  # unset keys are comments
    assert "# bootstrap_access_key = (not set)" in result.stdout


def test_config_show_precedence_and_masking(tmp_path: Path) -> None:
    config = tmp_path / "callbridge.toml"
    config.write_text('http_port = 1111\nlog_format = "json"\nhost = "0.0.0.0"\n')
    preset = "vb_" + "Q" * 30
    env = {
        "CALLBRIDGE_CONFIG": str(config),
        "CALLBRIDGE_HTTP_PORT": "2222",
        "CALLBRIDGE_LOG_FORMAT": "console",
        "CALLBRIDGE_BOOTSTRAP_ACCESS_KEY": preset,
        "CALLBRIDGE_DATABASE": "postgresql+asyncpg://cb:topsecret@db/cb",
    }
    result = run("config", "show", "--json", "--http-port", "3333", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["http_port"] == 3333  # flag beats env beats file
    assert shown["log_format"] == "console"  # env beats file
    assert shown["host"] == "0.0.0.0"  # file beats default
    assert shown["bootstrap_access_key"] == "********"
    assert shown["database"] == "postgresql+asyncpg://cb:********@db/cb"
    assert preset not in result.stdout and "topsecret" not in result.stdout

    as_toml = run("config", "show", "--config", str(config), env={"CALLBRIDGE_HTTP_PORT": "2222"})
    assert tomllib.loads(as_toml.stdout)["http_port"] == 2222


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == expected + "\n"


def test_bad_flag_value_is_one_line() -> None:
    assert_one_line_error(
        run("serve", "--http-port", "abc"),
        "callbridge: --http-port: expected an integer between 1 and 65535, got 'abc'",
    )
    assert_one_line_error(
        run("config", "show", "--log-format", "xml"),
        "callbridge: --log-format: expected one of console, json, got 'xml'",
    )


def test_bad_env_and_file_values_are_one_line(tmp_path: Path) -> None:
    assert_one_line_error(
        run("serve", env={"CALLBRIDGE_HTTP_PORT": "99999"}),
        "callbridge: CALLBRIDGE_HTTP_PORT: expected an integer between 1 and 65535, got '99999'",
    )
    assert_one_line_error(
        run("serve", env={"CALLBRIDGE_HTTP_PROT": "1"}),
        "callbridge: CALLBRIDGE_HTTP_PROT: unknown variable (did you mean CALLBRIDGE_HTTP_PORT?)",
    )
    (tmp_path / "callbridge.toml").write_text("data_dri = 'x'\n")
    assert_one_line_error(
        run("serve", "--config", "callbridge.toml", cwd=tmp_path),
        "callbridge: callbridge.toml: data_dri: unknown key (did you mean data_dir?)",
    )


def test_usage_errors_are_one_line() -> None:
    for args in (["serve", "--http-port"], ["serve", "--bogus"], ["frobnicate"], ["config"]):
        result = run(*args)
        assert result.returncode == 2, args
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("callbridge: "), (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_serve_help_lists_flags() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    for flag in (
        "--config",
        "--host",
        "--http-port",
        "--data-dir",
        "--database",
        "--log-format",
        "--log-level",
        "--tls-cert",
        "--tls-key",
        "--shutdown-grace",
    ):
        assert flag in result.stdout
