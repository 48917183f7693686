"""``callbridge h2b-test`` over ``tests/fixtures/h2b`` against a live ``callbridge serve``.

Everything is real: the server is a ``callbridge serve`` subprocess (SIP off, SQLite in a temp
folder, Whisper tiny.en behind ``/bots``), the runner is the ``callbridge h2b-test`` subprocess
driving the uhlive SDK's ``Recognizer`` over a WebSocket, audio is streamed in real time.

* Plain ``ws://``: a subset of the digit, boolean and keyword fixtures plus the no-match and
  no-input cases; the pass rate on the grammar fixtures is asserted, and a fixture whose
  expectation is wrong must fail (exit 1) — the runner cannot pass a broken recognition.
* TLS: callbridge serves HTTPS/WSS with a certificate of a private CA; the SDK's own
  ``build_authentication_request`` (both grants) is posted to the token endpoint over HTTPS
  with only ``UHLIVE_AUTH_SERVER`` pointing at callbridge and the CA trusted through
  ``SSL_CERT_FILE``; then ``h2b-test`` authenticates itself from ``UHLIVE_API_CLIENT`` /
  ``UHLIVE_API_SECRET`` and recognizes over ``wss://``.

The SDK's own ``examples/recognition/test_runner.py`` is not in the ``uhlive`` wheel (and needs
``toml``, ``websocket-client`` and ``requests``), so it is not run here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytest.importorskip("uhlive.stream.recognition")
pytest.importorskip("faster_whisper", reason="speech extra not installed (faster_whisper)")

BIN = Path(sys.executable).parent
CALLBRIDGE = BIN / "callbridge"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "h2b"
KEY = "vb_" + "h2bFixtureRunnerKey0123456789ab"
#: The grammar fixtures played in the live test (real time: keep the list short).
GRAMMAR_FIXTURES = ("boolean-01*", "digits-01*", "keywords-05*")
#: The share of those that must pass (accuracy proper is the benchmark's job).
MIN_GRAMMAR_PASS = 0.66
LINE = re.compile(r"^(PASS|FAIL|ERROR|SKIP)\s+(\S+)\s+(.*)$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CALLBRIDGE_", "UHLIVE_", "SSL_CERT_", "REQUESTS_CA_"))
    }
    env.update(extra or {})
    return env


@contextmanager
def _serve(workdir: Path, *extra: str, verify: ssl.SSLContext | bool = False) -> Iterator[int]:
    """A ``callbridge serve`` subprocess on a free port; yields the port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    scheme = "https" if extra else "http"
    command = [
        str(CALLBRIDGE), "serve", "--http-port", str(port), "--sip-port", "0",
        "--data-dir", str(workdir / "data"), *extra,
    ]  # fmt: skip
    with open(workdir / "serve.out", "wb") as out, open(workdir / "serve.err", "wb") as err:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=_env({"CALLBRIDGE_BOOTSTRAP_ACCESS_KEY": KEY}),
            cwd=workdir,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited: {(workdir / 'serve.err').read_text()}")
            try:
                httpx.get(f"{scheme}://127.0.0.1:{port}/healthz", timeout=1, verify=verify)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"serve not ready: {(workdir / 'serve.err').read_text()}")
                time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _h2b_test(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """Run ``callbridge h2b-test``; (exit code, {fixture: PASS|FAIL|ERROR}, stdout)."""
    result = subprocess.run(
        [str(CALLBRIDGE), "h2b-test", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(env),
        stdin=subprocess.DEVNULL,
    )
    verdicts = {}
    for line in result.stdout.splitlines():
        m = LINE.match(line)
        if m:
            verdicts[m.group(2)] = m.group(1)
    return result.returncode, verdicts, result.stdout + result.stderr


def _h2b_test_inprocess(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``callbridge h2b-test`` through ``main()`` in this process: (exit code, output)."""
    from callbridge.cli.main import main

    code = main(["h2b-test", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with _serve(tmp_path_factory.mktemp("h2b-serve")) as port:
        yield port


def test_fixtures_pass_against_a_live_server(server: int) -> None:
    matches = [
        arg for g in (*GRAMMAR_FIXTURES, "nomatch-05*", "noinput-*") for arg in ("--match", g)
    ]
    code, verdicts, output = _h2b_test(
        str(FIXTURES), "--url", f"ws://127.0.0.1:{server}/bots", "--token", KEY,
        "--min-pass-rate", "0", *matches,
    )  # fmt: skip
    assert code == 0, output
    assert len(verdicts) == 5, output
    assert "ERROR" not in verdicts.values(), output  # every fixture got a RECOGNITION-COMPLETE
    grammar = [
        v for name, v in verdicts.items() if name.split("-")[0] in {"boolean", "digits", "keywords"}
    ]
    assert len(grammar) == 3
    assert grammar.count("PASS") / len(grammar) >= MIN_GRAMMAR_PASS, output
    assert verdicts["noinput-01-silence"] == "PASS", output
    assert re.search(r"^\d+ passed, \d+ failed, 0 errors, 0 skipped; pass rate", output, re.M)


def test_wrong_expectations_fail(
    server: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The silent clip expecting Success "true": must be reported FAIL and exit 1.
    text = (FIXTURES / "noinput-01-silence.test").read_text()
    audio = next(p for p in FIXTURES.glob("noinput-01-silence.*") if p.suffix != ".test")
    shutil.copy(audio, tmp_path / f"silence{audio.suffix}")
    text = text.replace(audio.name, f"silence{audio.suffix}")
    text = text.replace('completion_cause = "NoInputTimeout"', 'completion_cause = "Success"')
    text += '\n[expected.interpretation]\ntype = "builtin:speech/boolean"\nvalue = true\n'
    (tmp_path / "wrong.test").write_text(text)
    code, output = _h2b_test_inprocess(
        capsys, str(tmp_path), "--url", f"ws://127.0.0.1:{server}/bots", "--token", KEY
    )
    assert code == 1, output
    assert output.startswith("FAIL  wrong  "), output
    assert "expected Success builtin:speech/boolean True, got NoInputTimeout" in output


def test_usage_errors_are_one_line(
    server: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _h2b_test_inprocess(capsys, str(tmp_path / "missing"), "--token", KEY)
    assert code == 2 and output.strip() == f"callbridge: {tmp_path / 'missing'}: not a folder"
    (tmp_path / "a.test").write_text('audio = "a.pcm"\ngrammars = ["builtin:speech/boolean"]\n')
    code, output = _h2b_test_inprocess(capsys, str(tmp_path), "--token", KEY)
    assert code == 2 and output.startswith("callbridge: a.test: missing key"), output
    (tmp_path / "a.test").unlink()
    shutil.copy(FIXTURES / "noinput-01-silence.test", tmp_path)
    code, output = _h2b_test_inprocess(
        capsys, str(tmp_path), "--url", f"ws://127.0.0.1:{server}/bots", "--token", "vb_wrong"
    )
    assert code == 2 and output.startswith("callbridge: cannot connect to ws://"), output
    assert "401" in output


# -- TLS: the SDK's auth over HTTPS with a private CA, then wss -------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=h2b test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", "ca.key", "-out", "ca.pem", cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "key.pem", "-out", "csr.pem", cwd=folder,
    )  # fmt: skip
    (folder / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "csr.pem", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "cert.pem", cwd=folder,
    )  # fmt: skip
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


# What an SDK example does, with httpx standing in for requests (not installed): the URL and
# form come from the SDK; the CA is trusted only through SSL_CERT_FILE.
SDK_AUTH = """
import json, ssl, sys
import httpx
from uhlive.auth import build_authentication_request
out = {}
for grant, extra in (("client", ()), ("password", ("someone", sys.argv[2]))):
    url, form = build_authentication_request(sys.argv[1], sys.argv[2], *extra)
    try:
        reply = httpx.post(url, data=form, verify=ssl.create_default_context(), timeout=10)
        out[grant] = [url, form["grant_type"], reply.status_code, reply.json()]
    except httpx.ConnectError as exc:
        out[grant] = [url, form["grant_type"], 0, str(exc)]
print(json.dumps(out))
"""


def test_sdk_auth_over_tls_then_wss(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command-line tool not installed")
    ca, cert, key = _private_ca(tmp_path)
    with _serve(
        tmp_path / "srv",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        verify=ssl.create_default_context(cafile=str(ca)),
    ) as port:
        auth_server = f"127.0.0.1:{port}"

        def sdk_auth(trust: Mapping[str, str]) -> dict[str, list[object]]:
            env = _env({"UHLIVE_AUTH_SERVER": auth_server, **trust})
            done = subprocess.run(
                [sys.executable, "-c", SDK_AUTH, "my-client", KEY],
                capture_output=True, text=True, timeout=60, env=env, check=True,
            )  # fmt: skip
            result: dict[str, list[object]] = json.loads(done.stdout)
            return result

        # Without the CA the certificate is refused: verification is real.
        untrusted = sdk_auth({})
        assert untrusted["client"][2] == 0 and "CERTIFICATE_VERIFY_FAILED" in str(untrusted)
        got = sdk_auth({"SSL_CERT_FILE": str(ca)})
        url = f"https://{auth_server}/realms/uhlive/protocol/openid-connect/token"
        for grant, name in (("client", "client_credentials"), ("password", "password")):
            sent_url, sent_grant, status, body = got[grant]
            assert (sent_url, sent_grant, status) == (url, name, 200), got
            assert isinstance(body, dict) and body["token_type"] == "Bearer"
        password_token = got["password"][3]["access_token"]  # type: ignore[index]

        sdk_env = {
            "UHLIVE_API_URL": f"wss://{auth_server}/ignored/path",
            "UHLIVE_AUTH_SERVER": auth_server,
            "UHLIVE_API_CLIENT": "my-client",
            "UHLIVE_API_SECRET": KEY,
            "SSL_CERT_FILE": str(ca),
        }
        # Token from the endpoint (client_credentials) inside h2b-test, then wss.
        code, verdicts, output = _h2b_test(
            str(FIXTURES), "--match", "noinput-*", "--match", "boolean-01*", env=sdk_env
        )
        assert code == 0, output
        assert verdicts == {"boolean-01-piper-clean": "PASS", "noinput-01-silence": "PASS"}
        # The password-grant token opens a session over wss too (the SDK's Recognizer).
        asyncio.run(_open_and_close(f"wss://{auth_server}/bots", password_token, ca))


async def _open_and_close(url: str, token: str, ca: Path) -> None:
    from uhlive.stream.recognition import Closed, Opened, Recognizer, build_connection_request
    from websockets.asyncio.client import connect

    _, headers = build_connection_request(token)
    rec = Recognizer()
    trust = ssl.create_default_context(cafile=str(ca))
    async with connect(url, additional_headers=headers, ssl=trust, open_timeout=10) as ws:
        await ws.send(rec.open("tls-test"))
        assert isinstance(rec.receive(await asyncio.wait_for(ws.recv(), 10)), Opened)
        await ws.send(rec.close())
        assert isinstance(rec.receive(await asyncio.wait_for(ws.recv(), 10)), Closed)
