"""A supervised pool of inference workers: inference never runs on the asyncio loop.

Each worker loads its model **once** and then serves jobs from one shared queue, so sessions
are multiplexed onto whichever worker is free. Two kinds:

* ``"thread"`` — the model lives in a dedicated thread. Right for engines that release the
  GIL while computing (CTranslate2/faster-whisper, ONNX Runtime).
* ``"process"`` — the model lives in a child process (``spawn`` start method) and a
  dispatcher thread in the parent ships jobs to it over a pipe. Right for engines that hold
  the GIL (PocketSphinx): they would otherwise stall the event loop's thread.

Back-pressure: at most ``workers + queue_size`` jobs are admitted; :meth:`WorkerPool.submit`
awaits beyond that. Supervision: a child process that dies (crash, OOM kill) is restarted
with a fresh model and the job it held is retried (``retries`` times) on the new process,
so the other sessions — and even the one whose job was lost — carry on. An exception raised
*by the model* is not a crash: it fails that job only.

Batching (thread kind, ``max_batch`` > 1, a model with ``run_batch(jobs) -> results``): a
worker that takes a job also takes the jobs *already* queued behind it, up to ``max_batch``
and its share of the queue (queued jobs / workers), and runs them as one batch; it never
waits for more, so a lone job is not delayed. If the
batch raises, its jobs run one by one so only the failing job fails.

The model factory must be picklable for the process kind (a module-level function or a
frozen dataclass), and the jobs and results must be picklable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

__all__ = ["EngineModel", "PoolClosed", "WorkerCrashed", "WorkerPool"]

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")
J_contra = TypeVar("J_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

#: Seconds a worker may take to load its model.
DEFAULT_START_TIMEOUT: Final = 120.0


class EngineModel(Protocol[J_contra, R_co]):
    """A loaded model: runs one job synchronously (in a worker)."""

    def run(self, job: J_contra) -> R_co: ...


class WorkerCrashed(RuntimeError):
    """A worker process died while holding the job, and retries were exhausted."""


class PoolClosed(RuntimeError):
    """The pool is closed (or not started)."""


class EngineJobError(RuntimeError):
    """The model raised while running a job in a worker process (message carries the cause)."""


@dataclass(eq=False)
class _Job(Generic[J, R]):
    payload: J
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[R]
    attempts: int = 0


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _process_main(factory: Callable[[], EngineModel[Any, Any]], conn: Connection) -> None:
    """Child process: load the model once, then serve jobs until a ``None`` job."""
    try:
        model = factory()
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            conn.send(("ok", model.run(job)))
        except Exception as exc:
            conn.send(("err", f"{type(exc).__name__}: {exc}"))


@dataclass(eq=False)
class _Worker:
    index: int
    thread: threading.Thread | None = None
    process: Any = None  # multiprocessing.process.BaseProcess
    conn: Connection | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class WorkerPool(Generic[J, R]):
    """Workers running ``factory()`` models; ``await submit(job)`` returns ``model.run(job)``."""

    def __init__(
        self,
        factory: Callable[[], EngineModel[J, R]],
        *,
        kind: Literal["thread", "process"],
        workers: int = 1,
        queue_size: int = 8,
        retries: int = 1,
        name: str = "speech",
        start_timeout: float = DEFAULT_START_TIMEOUT,
        max_batch: int = 1,
    ) -> None:
        if kind not in ("thread", "process"):
            raise ValueError(f"kind must be 'thread' or 'process', got {kind!r}")
        if workers < 1 or queue_size < 0 or retries < 0 or max_batch < 1:
            raise ValueError("workers and max_batch must be >= 1, queue_size and retries >= 0")
        self._factory = factory
        self.kind = kind
        self.name = name
        self._size = workers
        self._retries = retries
        self._max_batch = max_batch if kind == "thread" else 1
        self._start_timeout = start_timeout
        self._jobs: queue.Queue[_Job[J, R] | None] = queue.Queue()
        self._admission: asyncio.Semaphore | None = None
        self._capacity = workers + queue_size
        self._workers: list[_Worker] = []
        self._started = False
        self._closed = False
        self._lock = threading.Lock()
        #: Worker processes restarted after a crash since start.
        self.restarts = 0
        #: Jobs run as part of a batch of two or more, and the batches (thread kind).
        self.batched_jobs = 0
        self.batches = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and wait until every model is loaded (idempotent)."""
        if self._closed:
            raise PoolClosed(f"{self.name} pool is closed")
        if self._started:
            return
        self._started = True
        self._admission = asyncio.Semaphore(self._capacity)
        for index in range(self._size):
            worker = _Worker(index)
            target = self._thread_main if self.kind == "thread" else self._dispatch_main
            worker.thread = threading.Thread(
                target=target, args=(worker,), name=f"{self.name}-worker-{index}", daemon=True
            )
            self._workers.append(worker)
            worker.thread.start()
        for worker in self._workers:
            loaded = await asyncio.to_thread(worker.ready.wait, self._start_timeout)
            if not loaded or worker.error:
                reason = worker.error or f"model not loaded within {self._start_timeout} s"
                await self.aclose()
                raise RuntimeError(f"{self.name} worker {worker.index} failed to start: {reason}")

    async def aclose(self) -> None:
        """Stop the workers; queued jobs fail with :class:`PoolClosed`."""
        if self._closed:
            return
        self._closed = True
        self._fail_queued()
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            if worker.thread is not None:
                await asyncio.to_thread(worker.thread.join, 10.0)
            if worker.process is not None:  # joining the child must not block the loop
                await asyncio.to_thread(self._stop_process, worker)

    def close(self, timeout: float = 10.0) -> None:
        """Blocking :meth:`aclose` for code without a running loop (a finaliser, ``atexit``):
        waits up to ``timeout`` seconds per worker for the job it is running."""
        if self._closed:
            return
        self._closed = True
        self._fail_queued()
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            if worker.thread is not None and worker.thread is not threading.current_thread():
                worker.thread.join(timeout)
            self._stop_process(worker)

    def _fail_queued(self) -> None:
        """Fail every queued job with :class:`PoolClosed` (skipping loops already closed)."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                    job.loop.call_soon_threadsafe(
                        _resolve, job.future, False, PoolClosed(f"{self.name} pool closed")
                    )

    @property
    def size(self) -> int:
        """Number of workers."""
        return self._size

    def worker_pids(self) -> list[int | None]:
        """The child process ids (process kind; ``None`` for a worker without a process)."""
        with self._lock:
            return [w.process.pid if w.process is not None else None for w in self._workers]

    # -- submission --------------------------------------------------------------------

    async def submit(self, job: J) -> R:
        """Run ``job`` on a free worker; awaits while the pool is saturated."""
        if self._closed or not self._started or self._admission is None:
            raise PoolClosed(f"{self.name} pool is not running")
        async with self._admission:
            loop = asyncio.get_running_loop()
            item: _Job[J, R] = _Job(job, loop, loop.create_future())
            self._jobs.put(item)
            return await item.future

    # -- thread kind -------------------------------------------------------------------

    def _thread_main(self, worker: _Worker) -> None:
        try:
            model = self._factory()
        except BaseException as exc:
            worker.error = f"{type(exc).__name__}: {exc}"
            worker.ready.set()
            return
        worker.ready.set()
        run_batch: Callable[[list[Any]], list[Any]] | None = getattr(model, "run_batch", None)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.future.done():  # cancelled while queued
                continue
            jobs = [job]
            if run_batch is not None and self._max_batch > 1:
                stop = self._take_queued(jobs)
            else:
                stop = False
            if len(jobs) == 1:
                try:
                    result: tuple[bool, Any] = (True, model.run(job.payload))
                except Exception as exc:
                    result = (False, exc)
                job.loop.call_soon_threadsafe(_resolve, job.future, *result)
            else:
                assert run_batch is not None
                self._run_batch(model, run_batch, jobs)
            if stop:
                return

    def _take_queued(self, jobs: list[_Job[J, R]]) -> bool:
        """Add jobs already waiting (never waits for more) up to the batch size and this
        worker's share of the queue (other workers may be free); True when the stop sentinel
        was met."""
        limit = min(self._max_batch, len(jobs) + self._jobs.qsize() // self._size)
        while len(jobs) < limit:
            try:
                more = self._jobs.get_nowait()
            except queue.Empty:
                return False
            if more is None:
                return True
            if not more.future.done():
                jobs.append(more)
        return False

    def _run_batch(
        self,
        model: EngineModel[J, R],
        run_batch: Callable[[list[Any]], list[Any]],
        jobs: list[_Job[J, R]],
    ) -> None:
        """Run ``jobs`` as one batch; if the batch raises, each job alone (so an exception
        fails only the job that causes it)."""
        try:
            values = run_batch([j.payload for j in jobs])
            if len(values) != len(jobs):
                raise RuntimeError(f"run_batch returned {len(values)} results for {len(jobs)}")
            results: list[tuple[bool, Any]] = [(True, v) for v in values]
            self.batches += 1
            self.batched_jobs += len(jobs)
        except Exception:
            log.warning("%s batch of %d failed; running its jobs one by one", self.name, len(jobs))
            results = []
            for j in jobs:
                try:
                    results.append((True, model.run(j.payload)))
                except Exception as exc:
                    results.append((False, exc))
        for j, result in zip(jobs, results, strict=True):
            j.loop.call_soon_threadsafe(_resolve, j.future, *result)

    # -- process kind ------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_process_main,
            args=(self._factory, child),
            name=f"{self.name}-worker-{worker.index}",
            daemon=True,
        )
        process.start()
        child.close()
        status, detail = parent.recv() if parent.poll(self._start_timeout) else ("error", None)
        if status != "ready":
            parent.close()
            process.kill()
            process.join()
            raise RuntimeError(str(detail or f"no ready message in {self._start_timeout} s"))
        with self._lock:
            worker.process, worker.conn = process, parent

    def _stop_process(self, worker: _Worker) -> None:
        with self._lock:
            process, conn = worker.process, worker.conn
        if process is None:
            return
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        process.join(5.0)
        if process.is_alive():
            process.kill()
            process.join()

    def _dispatch_main(self, worker: _Worker) -> None:
        try:
            self._spawn(worker)
        except BaseException as exc:
            worker.error = f"{type(exc).__name__}: {exc}"
            worker.ready.set()
            return
        worker.ready.set()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            # The future is resolved on the loop (call_soon_threadsafe), so it is not done yet
            # right after a reply: the loop ends on the reply itself, never re-sending the job.
            while not job.future.done():
                job.attempts += 1
                try:
                    assert worker.conn is not None
                    worker.conn.send(job.payload)
                    status, value = worker.conn.recv()
                except (EOFError, OSError) as exc:
                    if not self._recover(worker, exc):
                        job.loop.call_soon_threadsafe(
                            _resolve, job.future, False, PoolClosed("worker could not restart")
                        )
                        return
                    if job.attempts > self._retries:
                        crash = WorkerCrashed(f"{self.name} worker {worker.index} crashed on job")
                        job.loop.call_soon_threadsafe(_resolve, job.future, False, crash)
                        break
                    continue
                if status == "ok":
                    job.loop.call_soon_threadsafe(_resolve, job.future, True, value)
                else:
                    job.loop.call_soon_threadsafe(
                        _resolve, job.future, False, EngineJobError(str(value))
                    )
                break

    def _recover(self, worker: _Worker, exc: BaseException) -> bool:
        """Restart a dead worker process; False if the pool is closing or restart failed."""
        with self._lock:
            process, conn = worker.process, worker.conn
            worker.process = worker.conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()
        code = process.exitcode if process is not None else None
        log.warning(
            "%s worker %d died (%s, exit code %s); restarting", self.name, worker.index, exc, code
        )
        if self._closed:
            return False
        try:
            self._spawn(worker)
        except Exception as spawn_error:
            log.error("%s worker %d restart failed: %s", self.name, worker.index, spawn_error)
            return False
        self.restarts += 1
        return True
