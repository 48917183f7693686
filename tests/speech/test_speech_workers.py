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


class BatchModel(Model):
    """Records the batches it ran; a batch holding "fail" raises (as a model would)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def run_batch(self, jobs: list[tuple[str, float]]) -> list[tuple[str, int, str]]:
        self.batches.append([op for op, _ in jobs])
        if any(op == "fail" for op, _ in jobs):
            raise ValueError("bad job in batch")
        time.sleep(max(s for _, s in jobs))
        return [(op, os.getpid(), "batch") for op, _ in jobs]


@dataclass(frozen=True)
class BatchFactory:
    models: list[BatchModel]

    def __call__(self) -> BatchModel:
        model = BatchModel()
        self.models.append(model)
        return model


async def test_thread_worker_batches_queued_jobs_and_never_waits_for_a_lone_one() -> None:
    models: list[BatchModel] = []
    pool: WorkerPool[tuple[str, float], tuple[str, int, str]] = WorkerPool(
        BatchFactory(models), kind="thread", workers=1, queue_size=16, max_batch=4
    )
    await pool.start()
    # A lone job runs at once, alone (model.run), not after a batching wait.
    started = time.perf_counter()
    assert (await pool.submit(("alone", 0.0)))[2] != "batch"
    assert time.perf_counter() - started < 0.5
    # The worker is busy with "head" while 9 more queue: they run in batches of <= 4.
    head = asyncio.ensure_future(pool.submit(("head", 0.2)))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(pool.submit((f"j{i}", 0.0))) for i in range(9)]
    results = await asyncio.gather(head, *rest)
    assert [r[0] for r in results] == ["head", *(f"j{i}" for i in range(9))]
    batches = models[0].batches
    assert [len(b) for b in batches] == [4, 4] and pool.batches == 2, batches
    assert pool.batched_jobs == 8
    assert sum(r[2] == "batch" for r in results) == 8  # and j8 ran alone
    await pool.aclose()


async def test_a_failing_batch_fails_only_its_bad_job() -> None:
    models: list[BatchModel] = []
    pool: WorkerPool[tuple[str, float], tuple[str, int, str]] = WorkerPool(
        BatchFactory(models), kind="thread", workers=1, queue_size=16, max_batch=8
    )
    await pool.start()
    head = asyncio.ensure_future(pool.submit(("head", 0.2)))
    await asyncio.sleep(0.05)
    jobs = [asyncio.ensure_future(pool.submit((op, 0.0))) for op in ("a", "fail", "b")]
    results = await asyncio.gather(head, *jobs, return_exceptions=True)
    assert models[0].batches == [["a", "fail", "b"]]
    assert [r[0] for r in results if isinstance(r, tuple)] == ["head", "a", "b"]
    assert isinstance(results[2], ValueError) and "bad job" in str(results[2])
    assert pool.batches == 0
    await pool.aclose()


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        WorkerPool(Factory(), kind="thread", max_batch=0)


async def test_a_worker_takes_only_its_share_of_the_queue() -> None:
    models: list[BatchModel] = []
    pool: WorkerPool[tuple[str, float], tuple[str, int, str]] = WorkerPool(
        BatchFactory(models), kind="thread", workers=2, queue_size=16, max_batch=8
    )
    await pool.start()
    heads = [asyncio.ensure_future(pool.submit((f"head{i}", 0.2))) for i in range(2)]
    await asyncio.sleep(0.05)  # both workers busy
    rest = [asyncio.ensure_future(pool.submit((f"j{i}", 0.05))) for i in range(6)]
    results = await asyncio.gather(*heads, *rest)
    assert sorted(r[0] for r in results) == sorted(["head0", "head1", *(f"j{i}" for i in range(6))])
    sizes = [len(b) for m in models for b in m.batches]
    assert sizes and max(sizes) <= 3, sizes  # 1 + 5 queued // 2 workers, not all 6
    await pool.aclose()
