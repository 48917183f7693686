"""``callbridge call-file`` as a real subprocess: a WAV caller through the real platform.

The default flow (answer, beep, echo 3 s, hangup) runs once per module and several tests look at
that run: its event lines, its DTMF, its recording (the 1 kHz beep, then the caller's 440 Hz
tone echoed back) and the call persisted in the data dir's SQLite store.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from callbridge.calls.model import Call, CallStatus, HangupBy, HangupReason
from callbridge.media.constants import SAMPLE_RATE
from callbridge.media.tones import tone
from callbridge.media.wav import read_wav, write_wav
from callbridge.store import Store

CALLBRIDGE = Path(sys.executable).parent / "callbridge"
SUMMARY_RE = re.compile(
    r"^call (?P<id>[0-9a-f-]{36}): hangup (?P<reason>\w+) \((?P<by>\w+)\), "
    r"(?P<seconds>[0-9.]+) s, (?P<rest>.*)$",
    re.MULTILINE,
)


def _env(*, asyncio_debug: bool = True) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLBRIDGE_") or k.startswith("CALLBRIDGE_TEST_")
    }
    if not asyncio_debug:
        # Debug mode logs slow callbacks (100 ms threshold) as warnings on stderr; tests that
        # demand exactly one stderr line must not depend on the machine's load.
        env.pop("PYTHONASYNCIODEBUG", None)
    return env


def run(
    *args: str, timeout: float = 20, asyncio_debug: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CALLBRIDGE), "call-file", *args],
        capture_output=True,
        text=True,
        env=_env(asyncio_debug=asyncio_debug),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def event_types(stdout: str) -> list[str]:
    return re.findall(r"^  \+\d+\.\d{3}s (\w+)", stdout, re.MULTILINE)


def dominant_hz(samples: npt.NDArray[np.float64]) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * SAMPLE_RATE / len(samples)


def stored_calls(data_dir: Path) -> list[Call]:
    async def load() -> list[Call]:
        store = await Store.open(f"sqlite+aiosqlite:///{data_dir}/callbridge.db", migrate=False)
        try:
            workspace = await store.workspaces.first()
            assert workspace is not None
            return await store.calls.list(workspace.id)
        finally:
            await store.close()

    return asyncio.run(load())


@dataclass(frozen=True)
class DefaultRun:
    data_dir: Path
    record: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> DefaultRun:
    """The default flow with a 1 s 440 Hz caller who presses 5 and #."""
    data_dir = tmp_path_factory.mktemp("callfile")
    caller = data_dir / "caller.wav"
    write_wav(caller, tone(440, 1000))
    record = data_dir / "heard.wav"
    result = run(
        "--play",
        str(caller),
        "--record",
        str(record),
        "--dtmf",
        "1.0:5,1.5:#",
        "--data-dir",
        str(data_dir),
    )
    return DefaultRun(data_dir, record, result)


def test_default_flow_prints_the_call_events_and_a_summary(default_run: DefaultRun) -> None:
    result = default_run.result
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "was never awaited" not in result.stderr
    assert "Task was destroyed" not in result.stderr
    # Empty store: the bootstrap key is shown once, as `serve` shows it.
    assert "created the first workspace; its access key (shown only once)" in result.stdout
    assert re.search(r"^  vb_[A-Za-z0-9]{32}$", result.stdout, re.MULTILINE)
    types = event_types(result.stdout)
    assert types[0] == "call_created"
    assert "  +0.000s call_created status=ringing" in result.stdout
    for expected in ("call_progressing", "activeflow_created", "call_hangup"):
        assert expected in types
    for action in ("answer", "beep", "echo", "hangup"):
        assert f"activeflow_updated action={action}" in result.stdout
    assert "call_hangup reason=normal by=local" in result.stdout
    assert types.index("call_progressing") < types.index("call_hangup")
    summary = SUMMARY_RE.search(result.stdout)
    assert summary is not None, result.stdout
    assert (summary["reason"], summary["by"]) == ("normal", "local")
    assert 3.0 <= float(summary["seconds"]) < 6.0
    assert summary["rest"].startswith("recorded ")
    assert summary["rest"].endswith(f" s to {default_run.record}")
    assert result.stdout.rstrip().endswith(summary.group(0))


def test_dtmf_keys_are_received(default_run: DefaultRun) -> None:
    result = default_run.result
    assert result.returncode == 0, result.stderr
    digits = re.findall(r"dtmf_received digit=(\S+)", result.stdout)
    assert digits == ["5", "#"]


def test_recording_holds_the_beep_then_the_echoed_caller(default_run: DefaultRun) -> None:
    assert default_run.result.returncode == 0, default_run.result.stderr
    pcm = np.frombuffer(read_wav(default_run.record), dtype="<i2").astype(np.float64)
    assert 3.0 <= len(pcm) / SAMPLE_RATE < 6.0
    loud = np.flatnonzero(np.abs(pcm) > 1000)
    assert loud.size, "the recording is silent"
    window = SAMPLE_RATE // 5  # 200 ms
    first, last = int(loud[0]), int(loud[-1])
    assert first < SAMPLE_RATE // 2, "the beep should come right after answer"
    assert abs(dominant_hz(pcm[first : first + window]) - 1000) < 20
    # The echo (of the caller's 1 s tone) ends the loud part.
    assert last - first > window
    assert abs(dominant_hz(pcm[last - window : last]) - 440) < 20


def test_the_call_is_persisted(default_run: DefaultRun) -> None:
    result = default_run.result
    assert result.returncode == 0, result.stderr
    summary = SUMMARY_RE.search(result.stdout)
    assert summary is not None
    calls = {c.id: c for c in stored_calls(default_run.data_dir)}
    call = calls[uuid.UUID(summary["id"])]
    assert call.status is CallStatus.HANGUP
    assert call.hangup_reason is HangupReason.NORMAL
    assert call.hangup_by is HangupBy.LOCAL
    assert call.tm_progressing is not None


def test_custom_actions_and_existing_store(tmp_path: Path) -> None:
    # A flow without hangup: the call is hung up when the flow runs out (spec §6.1).
    result = run(
        "--actions",
        '[{"type":"answer"},{"type":"sleep","option":{"duration":200}}]',
        "--data-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "activeflow_updated action=sleep" in result.stdout
    assert "activeflow_updated action=beep" not in result.stdout
    assert "call_hangup reason=normal by=local" in result.stdout
    summary = SUMMARY_RE.search(result.stdout)
    assert summary is not None, result.stdout
    assert float(summary["seconds"]) < 2.0
    assert summary["rest"].startswith("not recorded")
    # The second run reuses the store: no new key, and both calls are listed.
    again = run("--actions", '[{"type":"answer"},{"type":"hangup"}]', "--data-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "access key" not in again.stdout
    calls = stored_calls(tmp_path)
    assert len(calls) == 2
    assert all(c.status is CallStatus.HANGUP for c in calls)


def test_caller_hangs_up(tmp_path: Path) -> None:
    result = run("--hangup-after", "0.3", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "call_hangup reason=normal by=remote" in result.stdout
    summary = SUMMARY_RE.search(result.stdout)
    assert summary is not None, result.stdout
    assert summary["by"] == "remote"
    assert float(summary["seconds"]) < 2.0


def test_sigint_hangs_up_and_exits_130(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            str(CALLBRIDGE),
            "call-file",
            "--actions",
            '[{"type":"answer"},{"type":"echo"}]',
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if "activeflow_updated action=echo" in line:
                break
        else:
            pytest.fail(f"the echo never started: {''.join(seen)}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted; hanging up call" in err
    assert "call_hangup reason=normal by=local" in out
    assert SUMMARY_RE.search(out) is not None
    assert [c.status for c in stored_calls(tmp_path)] == [CallStatus.HANGUP]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actions", "[{"], "--actions: invalid JSON"),
        (["--actions", '{"type":"answer"}'], "--actions: expected a JSON array"),
        (["--actions", '[{"type":"answer"},{"type":"nope"}]'], "actions[1] (nope)"),
        (["--actions", '[{"type":"sleep"}]'], "actions[0] (sleep): option 'duration'"),
        (["--actions", '[{"type":"agent_call"}]'], "actions[0] (agent_call): the action type"),
        (["--actions-file", "{missing}"], "--actions-file: cannot read"),
        (["--play", "{missing}"], "--play: cannot read"),
        (["--play", "{notwav}"], "not a WAV file"),
        (["--dtmf", "1.0:5,x:#"], "--dtmf: 'x:#'"),
        (["--dtmf", "1.0:G"], "invalid DTMF digit 'G'"),
        (["--dtmf", "1.0:55"], "exactly one key"),
        (["--hangup-after=-1"], "--hangup-after: must be a non-negative number"),
        (["--workspace-id", "nope"], "--workspace-id: 'nope' is not a UUID"),
        (["--workspace-id", str(uuid.UUID(int=7))], "--workspace-id: no workspace"),
        (["--record", "{missing}/heard.wav"], "--record: cannot write"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    notwav = tmp_path / "notwav.wav"
    notwav.write_text("hello")
    argv = [
        a.replace("{missing}", str(tmp_path / "missing")).replace("{notwav}", str(notwav))
        for a in args
    ]
    result = run(*argv, "--data-dir", str(tmp_path / "data"), asyncio_debug=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("callbridge: ")
    assert message in lines[0]
    assert "call_created" not in result.stdout
