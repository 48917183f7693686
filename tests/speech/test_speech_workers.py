"""The supervised worker pool: threads, processes, back-pressure, crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from dataclasses import dataclass

import pytest

from callbridge.speech.asr.workers import EngineJobError, PoolClosed, WorkerPool


class Model:
    loads = 0

    def __init__(self) -> None:
        Model.loads += 1
        self.pid = os.getpid()

    def run(self, job: tuple[str, float]) -> tuple[str, int, str]:
        op, seconds = job
        if op == "fail":
            raise ValueError("bad job")
        time.sleep(seconds)
        return op, os.getpid(), threading.current_thread().name


@dataclass(frozen=True)
class Factory:
    def __call__(self) -> Model:
        return Model()


@dataclass(frozen=True)
class BrokenFactory:
    def __call__(self) -> Model:
        raise RuntimeError("no model here")


async def test_thread_pool_loads_once_per_worker_and_multiplexes() -> None:
    Model.loads = 0
    pool: WorkerPool[tuple[str, float], tuple[str, int, str]] = WorkerPool(
        Factory(), kind="thread", workers=2, queue_size=4
    )
    await pool.start()
    loop_thread = threading.current_thread().name
    results = await asyncio.gather(*(pool.submit((f"j{i}", 0.01)) for i in range(10)))
    assert [r[0] for r in results] == [f"j{i}" for i in range(10)]
    assert {r[2] for r in results} <= {"speech-worker-0", "speech-worker-1"}
    assert loop_thread not in {r[2] for r in results}
    assert Model.loads == 2
    with pytest.raises(ValueError, match="bad job"):
        await pool.submit(("fail", 0))
    await pool.aclose()
    with pytest.raises(PoolClosed):
        await pool.submit(("x", 0))


async def test_back_pressure_admits_workers_plus_queue() -> None:
    pool: WorkerPool[tuple[str, float], tuple[str, int, str]] = WorkerPool(
        Factory(), kind="thread", workers=1, queue_size=1
    )
    await pool.start()
    tasks = [asyncio.create_task(pool.submit(("slow", 0.2))) for _ in range(4)]
    await asyncio.sleep(0.05)
    assert pool._admission is not None and pool._admission.locked()
    await asyncio.gather(*tasks)
    await pool.aclose()


async def test_load_failure_is_reported() -> None:
    pool: WorkerPool[tuple[str, float], tuple[str, int, str]] = WorkerPool(
        BrokenFactory(), kind="thread"
    )
    with pytest.raises(RuntimeError, match="no model here"):
        await pool.start()


async def test_process_worker_crash_is_survived() -> None:
    pool: WorkerPool[tuple[str, float], tuple[str, int, str]] = WorkerPool(
        Factory(), kind="process", workers=2, queue_size=4, name="crashy"
    )
    await pool.start()
    try:
        pids = pool.worker_pids()
        assert len(set(pids)) == 2 and os.getpid() not in pids
        # Two sessions busy on both workers; kill one worker mid-job.
        victim_job = asyncio.create_task(pool.submit(("victim", 1.0)))
        other_job = asyncio.create_task(pool.submit(("other", 1.0)))
        await asyncio.sleep(0.3)
        victim_pid = next(p for p in pids if p is not None)
        os.kill(victim_pid, signal.SIGKILL)
        victim, other = await asyncio.gather(victim_job, other_job)
        assert victim[0] == "victim" and other[0] == "other"  # retried on the new process
        assert pool.restarts == 1
        assert victim_pid not in pool.worker_pids()
        with pytest.raises(EngineJobError, match="bad job"):
            await pool.submit(("fail", 0))
        assert (await pool.submit(("after", 0)))[0] == "after"
    finally:
        await pool.aclose()
