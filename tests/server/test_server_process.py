"""``callbridge serve`` as a real process on 127.0.0.1: HTTP surface, start-up failures,
bootstrap key announcement, logging and graceful shutdown."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from server_harness import CALLBRIDGE, StartServer, clean_env, free_port, start_server

__all__ = ["start_server"]  # the fixture, re-exported so pytest finds it here

KEY = re.compile(r"vb_[A-Za-z0-9_-]{20,}")
REQUEST_ID = re.compile(r"req_[A-Za-z0-9]{26}")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CALLBRIDGE), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_healthz_metrics_and_error_envelope(start_server: StartServer) -> None:
    server = start_server()
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["store"] == "ok"
        assert body["version"] == run_cli("version").stdout.split()[1]
        assert REQUEST_ID.fullmatch(health.headers["x-request-id"])

        missing = client.get("/no/such/route", headers={"X-Request-Id": "client.id-42_x"})
        assert missing.status_code == 404
        assert missing.headers["x-request-id"] == "client.id-42_x"
        error = missing.json()["error"]
        assert error["status"] == "NOT_FOUND"
        assert error["reason"] == "ROUTE_NOT_FOUND"
        assert error["request_id"] == "client.id-42_x"
        assert "/no/such/route" in error["message"]

        # An unacceptable client id (bad characters / too long) is replaced by a generated one.
        for bad in ("has space", "x" * 65, "sl/ash"):
            reply = client.get("/nope", headers={"X-Request-Id": bad})
            assert REQUEST_ID.fullmatch(reply.headers["x-request-id"])
            assert reply.json()["error"]["request_id"] == reply.headers["x-request-id"]
        assert (
            REQUEST_ID.fullmatch(
                client.get("/nope", headers={"X-Request-Id": "y" * 64}).headers["x-request-id"]
            )
            is None
        )

        wrong_method = client.post("/healthz", json={})
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"]["request_id"] == wrong_method.headers["x-request-id"]
        assert "GET" in wrong_method.headers["allow"]

        auth = client.get("/v1.0/auth/login").json()["error"]
        assert auth["reason"] == "ROUTE_NOT_FOUND" and "/auth/login" in auth["message"]

        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = metrics.text
        assert "# TYPE callbridge_http_requests_total counter" in text
        assert re.search(r'callbridge_http_requests_total\{method="GET",status="2xx"\} [1-9]', text)
        assert re.search(r'callbridge_http_requests_total\{method="GET",status="4xx"\} [1-9]', text)
        assert "callbridge_http_request_seconds_bucket" in text


def test_body_limit_and_cors(start_server: StartServer) -> None:
    server = start_server(env={"CALLBRIDGE_HTTP_MAX_BODY_BYTES": "1000"})
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        big = client.post("/healthz", content=b"x" * 5000, headers={"Content-Type": "text/plain"})
        assert big.status_code == 413
        error = big.json()["error"]
        assert error["reason"] == "REQUEST_BODY_TOO_LARGE"
        assert error["request_id"] == big.headers["x-request-id"]

        small = client.post("/healthz", content=b"x" * 10)
        assert small.status_code == 405  # under the limit: routing decides

        preflight = client.options(
            "/healthz",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] in ("*", "https://app.example")
        simple = client.get("/healthz", headers={"Origin": "https://app.example"})
        assert simple.headers["access-control-allow-origin"] == "*"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_bootstrap_key_printed_once_and_never_logged(
    start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "shared-data"
    first = start_server("--log-format", "json", data_dir=data)
    code, _ = first.signal_and_wait(signal.SIGTERM, timeout=15)
    assert code == 0
    keys = KEY.findall(first.stdout())
    assert len(keys) == 1, first.stdout()
    key = keys[0]
    log_text = first.stderr()
    assert key not in log_text
    lines = [line for line in log_text.splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every log line is one JSON object
    for record in records:
        assert {"event", "level", "timestamp", "logger"} <= record.keys()
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", record["timestamp"])
    assert any(r["logger"].startswith("uvicorn") for r in records)

    # The key works as a credential string in a request line, yet the access log redacts it.
    second = start_server("--log-format", "json", data_dir=data)
    httpx.get(second.base_url + f"/healthz?accesskey={key}", timeout=5)
    httpx.get(second.base_url + "/healthz", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    code, _ = second.signal_and_wait(signal.SIGTERM, timeout=15)
    assert code == 0
    assert KEY.search(second.stdout()) is None  # not announced again
    assert key not in second.stderr()
    assert "/healthz?accesskey=" in second.stderr()


def test_preset_bootstrap_key_is_not_printed(start_server: StartServer) -> None:
    preset = "vb_" + "P" * 30
    server = start_server(env={"CALLBRIDGE_BOOTSTRAP_ACCESS_KEY": preset})
    code, _ = server.signal_and_wait(signal.SIGTERM, timeout=15)
    assert code == 0
    assert preset not in server.stdout()
    assert preset not in server.stderr()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_idle_keepalive_exits_zero_within_grace(
    start_server: StartServer, sig: signal.Signals
) -> None:
    grace = 4.0
    server = start_server("--shutdown-grace", str(grace))
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        assert client.get("/healthz").status_code == 200  # leaves an idle keep-alive connection
        code, elapsed = server.signal_and_wait(sig, timeout=grace + 10)
    assert code == 0, server.stderr()
    assert elapsed < grace, elapsed
    # Note: no route reads a request body slowly yet (nor a WebSocket route exists), so an
    # in-flight request cannot be held open from outside; idle keep-alive is what is tested.
    err = server.stderr()
    assert "Traceback" not in err
    assert "shutting down" in err and "callbridge stopped" in err
    # The listener is gone.
    with pytest.raises(httpx.TransportError):
        httpx.get(server.base_url + "/healthz", timeout=2)


def test_taken_port_is_one_clear_line(start_server: StartServer, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = start_server(port=port, wait=False)
        code = server.wait_exit(timeout=30)
    assert code == 2
    err_lines = server.stderr().splitlines()
    assert err_lines == [f"callbridge: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert not (tmp_path / "data").exists()  # nothing was created


def test_bad_database_url_is_one_clear_line(start_server: StartServer) -> None:
    server = start_server("--database", "mysql://root:hunter2@db/x", wait=False)
    assert server.wait_exit(timeout=30) == 2
    err = server.stderr()
    assert err.count("\n") == 1 and err.startswith(
        "callbridge: --database: expected a database URL"
    )
    assert "hunter2" not in err


def test_unreachable_database_is_one_clear_line(start_server: StartServer) -> None:
    port = free_port()  # nothing listens there
    server = start_server(
        "--database", f"postgresql+asyncpg://cb:pw@127.0.0.1:{port}/cb", wait=False
    )
    assert server.wait_exit(timeout=60) == 2
    lines = [line for line in server.stderr().splitlines() if line.startswith("callbridge:")]
    assert len(lines) == 1, server.stderr()
    assert re.match(rf"callbridge: database: cannot connect to .*127\.0\.0\.1:{port}\b", lines[0])
    assert "refused" in lines[0].lower()
    assert ":pw@" not in lines[0]
    assert "Traceback" not in server.stderr()


def test_tls(start_server: StartServer, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command-line tool not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key), scheme="https")
    reply = httpx.get(server.base_url + "/healthz", verify=False, timeout=5)
    assert reply.status_code == 200 and reply.json()["store"] == "ok"
    with pytest.raises(httpx.TransportError):  # plain HTTP is not served on that port
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=3)
    code, _ = server.signal_and_wait(signal.SIGTERM, timeout=15)
    assert code == 0


def test_unusable_tls_files_are_one_clear_line(start_server: StartServer, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key), wait=False)
    assert server.wait_exit(timeout=30) == 2
    err = server.stderr()
    assert err.count("\n") == 1 and err.startswith("callbridge: tls: cannot load certificate")
