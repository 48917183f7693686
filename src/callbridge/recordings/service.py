"""The recording service: start, stop and finish recordings of live calls.

``RecordingService(store, bus, clock, data_dir)`` is created by the composition root and
attached to the call service (:meth:`RecordingService.attach`), so features that only hold the
call service — flow actions, the RTVBP voice bridge — find it with :func:`recordings_for`.

Life of one recording:

1. :meth:`RecordingService.start` checks the call is live and the limits (duration capped by
   ``max_duration_seconds``; at most ``max_active`` recordings at once), opens the WAV file
   (in a worker thread), persists the row (``recording``), attaches a
   :class:`~callbridge.recordings.recorder.CallRecorder` to the call's media graph and
   publishes ``recording_started``. With ``beep_start`` a 1000 Hz 250 ms beep is played to
   the caller *after* recording began (it is on the right channel) and ``start`` returns once
   it was heard.
2. It ends on :meth:`stop`, on hangup, on its duration, key or silence limit, on a disk error,
   or on :meth:`shutdown`: the file is closed, the row updated (``ended``, ``duration_ms``,
   ``end_reason``, ``tm_end``) and ``recording_finished`` published — preceded by
   ``recording_failed`` (with ``error``) when the file could not be written.

A failure never raises into the call: :meth:`start` raises :class:`RecordingError` to its
caller (the flow action or the RTVBP request, which report it) and the call goes on.

The call model has no ``recording_id``/``recording_ids`` columns yet (the call object shows the
nil id and ``[]``); the association lives in the recordings table (``reference_id``), see
:meth:`~callbridge.recordings.repos.RecordingRepository.list_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog

from callbridge.bus.base import EventBus, make_topic
from callbridge.calls.serialize import utc_now_from
from callbridge.media.clock import Clock
from callbridge.media.constants import FRAME_MS
from callbridge.media.tones import tone
from callbridge.recordings.model import (
    EndReason,
    Recording,
    RecordingStatus,
    check_recording_transition,
    check_tags,
    recording_to_dict,
    relative_filename,
)
from callbridge.recordings.recorder import END_KEYS, CallRecorder, open_writer
from callbridge.store import Store

if TYPE_CHECKING:
    from callbridge.calls.service import CallService, LiveCall

log = structlog.get_logger("callbridge.recordings")

#: Longest recording unless configured otherwise (the call's own maximum is 1 h).
DEFAULT_MAX_DURATION_SECONDS: Final = 3600.0
#: Most recordings running at once in one process.
DEFAULT_MAX_ACTIVE: Final = 1000
#: The ``beep_start`` tone (same as the ``beep`` action).
BEEP_HZ: Final = 1000
BEEP_MS: Final = 250

_SERVICES: weakref.WeakKeyDictionary[CallService, RecordingService] = weakref.WeakKeyDictionary()


class RecordingError(Exception):
    """A recording could not be started (call not live, limits, disk); the message says why."""


class RecordingNotFound(RecordingError):
    """No such recording (for this call / workspace)."""


def recordings_for(calls: CallService) -> RecordingService | None:
    """The recording service attached to ``calls``, if any."""
    return _SERVICES.get(calls)


@dataclasses.dataclass(eq=False)
class _Active:
    recording: Recording
    recorder: CallRecorder
    live: LiveCall
    finished: asyncio.Future[Recording]
    supervisor: asyncio.Task[None] | None = None


class RecordingService:
    """Owns the recordings running in this process."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Clock,
        data_dir: Path,
        *,
        max_duration_seconds: float = DEFAULT_MAX_DURATION_SECONDS,
        max_active: int = DEFAULT_MAX_ACTIVE,
    ) -> None:
        if max_duration_seconds <= 0 or max_active < 1:
            raise ValueError("recording limits must be positive")
        self.store = store
        self.bus = bus
        self.clock = clock
        self.data_dir = Path(data_dir)
        self.max_duration_seconds = max_duration_seconds
        self.max_active = max_active
        self._active: dict[uuid.UUID, _Active] = {}
        self._closing = False

    def attach(self, calls: CallService) -> None:
        """Make this service the one :func:`recordings_for` returns for ``calls``."""
        _SERVICES[calls] = self

    def path_of(self, rec: Recording) -> Path:
        """The absolute path of a recording's file."""
        return self.data_dir / rec.filename

    def active(self, call_id: uuid.UUID | None = None) -> list[Recording]:
        """Recordings running now (of one call when ``call_id`` is given)."""
        return [
            a.recording
            for a in self._active.values()
            if call_id is None or a.recording.reference_id == call_id
        ]

    # -- start --------------------------------------------------------------------------------
    async def start(
        self,
        live: LiveCall,
        *,
        tags: dict[str, str] | None = None,
        duration_seconds: float | None = None,
        end_of_key: str | None = None,
        end_of_silence_seconds: float | None = None,
        beep_start: bool = False,
        on_end_flow_id: uuid.UUID | None = None,
    ) -> Recording:
        """Start recording ``live``; returns the persisted recording (status ``recording``).

        Raises :class:`RecordingError` (call not live, a bad option, too many recordings, the
        file cannot be created — the last one also persisted as an ended recording and
        published as ``recording_failed``).
        """
        if self._closing:
            raise RecordingError("recordings are shutting down")
        if not live.is_live:
            raise RecordingError("the call has ended")
        if len(self._active) >= self.max_active:
            raise RecordingError(f"too many recordings in progress (limit {self.max_active})")
        limit = self.max_duration_seconds
        if duration_seconds is not None:
            if duration_seconds <= 0:
                raise RecordingError("duration must be positive")
            limit = min(limit, duration_seconds)
        if end_of_key is not None and end_of_key not in END_KEYS:
            raise RecordingError(f"end_of_key {end_of_key!r} is not a key or 'any'")
        silence_frames = None
        if end_of_silence_seconds:
            if end_of_silence_seconds < 0:
                raise RecordingError("end_of_silence must not be negative")
            silence_frames = max(1, round(end_of_silence_seconds * 1000 / FRAME_MS))
        try:
            clean_tags = check_tags(tags or {})
        except ValueError as exc:
            raise RecordingError(f"tags: {exc}") from None
        now = utc_now_from(self.clock.time())
        call = live.call
        rec_id = uuid.uuid4()
        rec = Recording(
            id=rec_id,
            workspace_id=call.workspace_id,
            reference_type="call",
            reference_id=call.id,
            filename=relative_filename(call.workspace_id, rec_id),
            tm_create=now,
            tm_update=now,
            tags=clean_tags,
            activeflow_id=call.activeflow_id,
            on_end_flow_id=on_end_flow_id,
            tm_start=now,
        )
        try:
            writer = await asyncio.to_thread(open_writer, self.path_of(rec))
        except OSError as exc:
            error = f"cannot create {rec.filename}: {exc.strerror or exc}"
            await self._record_failed_start(rec, error)
            raise RecordingError(error) from None
        try:
            rec = await self.store.recordings.insert(rec)
        except BaseException:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(writer.close)
            raise
        recorder_limit = max(1, round(limit * 1000 / FRAME_MS))
        recorder = CallRecorder(
            live,
            writer,
            name=f"recording-{rec.id}",
            max_frames=recorder_limit,
            end_of_key=end_of_key,
            end_of_silence_frames=silence_frames,
        )
        finished: asyncio.Future[Recording] = asyncio.get_running_loop().create_future()
        active = _Active(rec, recorder, live, finished)
        self._active[rec.id] = active
        await self._publish(rec, "recording_started")
        log.info("recording started", call_id=str(call.id), recording_id=str(rec.id))
        active.supervisor = asyncio.create_task(
            self._supervise(active), name=f"recording-supervisor-{rec.id}"
        )
        if not live.is_live:  # the call ended while the file or the row was being made
            recorder.request_stop(EndReason.HANGUP)
        elif beep_start:
            await self._beep(live, rec.id)
        return dataclasses.replace(rec)

    async def _beep(self, live: LiveCall, rec_id: uuid.UUID) -> None:
        producer = live.graph.producer(f"recording-beep-{rec_id}")
        try:
            await producer.play(tone(BEEP_HZ, BEEP_MS))
        except RuntimeError:  # the call ended and closed the producer
            pass
        finally:
            producer.close()

    async def _record_failed_start(self, rec: Recording, error: str) -> None:
        rec.status = RecordingStatus.ENDED
        rec.end_reason = EndReason.ERROR
        rec.tm_end = rec.tm_start
        log.warning("recording could not start", call_id=str(rec.reference_id), error=error)
        try:
            await self.store.recordings.insert(rec)
        except Exception:
            log.exception("could not persist a failed recording", recording_id=str(rec.id))
        await self._publish(rec, "recording_failed", error=error)

    # -- stop ---------------------------------------------------------------------------------
    async def stop(
        self,
        recording_id: uuid.UUID,
        *,
        call_id: uuid.UUID | None = None,
        workspace_id: uuid.UUID | None = None,
        reason: EndReason = EndReason.STOP,
    ) -> Recording:
        """Stop a recording and return it once ended (stopping an ended one returns it).

        ``call_id`` / ``workspace_id`` restrict which recordings may be named: another call's
        or workspace's recording is :class:`RecordingNotFound`, as is an unknown id.
        """
        active = self._active.get(recording_id)
        if active is not None:
            rec = active.recording
            if (call_id is not None and rec.reference_id != call_id) or (
                workspace_id is not None and rec.workspace_id != workspace_id
            ):
                raise RecordingNotFound(str(recording_id))
            active.recorder.request_stop(reason)
            return await asyncio.shield(active.finished)
        stored = await self.store.recordings.get_any(recording_id)
        if (
            stored is None
            or (call_id is not None and stored.reference_id != call_id)
            or (workspace_id is not None and stored.workspace_id != workspace_id)
        ):
            raise RecordingNotFound(str(recording_id))
        return stored

    async def wait_finished(self, recording_id: uuid.UUID) -> Recording | None:
        """Until the recording has ended (``None`` when it is not running here)."""
        active = self._active.get(recording_id)
        if active is None:
            return None
        return await asyncio.shield(active.finished)

    async def shutdown(self, grace_seconds: float = 5.0) -> None:
        """Stop every recording and wait (bounded) for their rows and files to be final."""
        self._closing = True
        actives = list(self._active.values())
        for active in actives:
            active.recorder.request_stop(EndReason.SHUTDOWN)
        tasks = [a.supervisor for a in actives if a.supervisor is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()

    # -- the end of one recording -------------------------------------------------------------
    async def _supervise(self, active: _Active) -> None:
        recorder, live = active.recorder, active.live
        ended = asyncio.ensure_future(live.ended.wait())
        done = asyncio.ensure_future(recorder.wait())
        try:
            await asyncio.wait({ended, done}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                recorder.request_stop(EndReason.HANGUP)
            await done
        except asyncio.CancelledError:
            recorder.request_stop(EndReason.SHUTDOWN)
            raise
        finally:
            ended.cancel()
            rec = await asyncio.shield(self._finish(active))
            if not active.finished.done():
                active.finished.set_result(rec)

    async def _finish(self, active: _Active) -> Recording:
        rec, recorder = active.recording, active.recorder
        try:
            return await self._finalize(rec, recorder)
        finally:
            # Listed as active until its row and events are final.
            self._active.pop(rec.id, None)

    async def _finalize(self, rec: Recording, recorder: CallRecorder) -> Recording:
        check_recording_transition(rec.status, RecordingStatus.ENDED)
        now = utc_now_from(self.clock.time())
        rec.status = RecordingStatus.ENDED
        rec.end_reason = recorder.stop_reason or EndReason.STOP
        rec.duration_ms = recorder.duration_ms
        rec.tm_end = now
        rec.tm_update = max(now, rec.tm_update)
        try:
            await self.store.recordings.update(rec)
        except Exception:
            log.exception("could not persist the end of a recording", recording_id=str(rec.id))
        if recorder.error is not None:
            await self._publish(rec, "recording_failed", error=recorder.error)
        await self._publish(rec, "recording_finished")
        log.info(
            "recording finished",
            call_id=str(rec.reference_id),
            recording_id=str(rec.id),
            reason=rec.end_reason.value,
            duration_ms=rec.duration_ms,
        )
        return dataclasses.replace(rec)

    async def _publish(self, rec: Recording, event_type: str, **extra: Any) -> None:
        wid = str(rec.workspace_id)
        data = recording_to_dict(rec) | extra
        try:
            await self.bus.publish(
                make_topic(wid, "recording", str(rec.id), event_type),
                event_type,
                data,
                workspace_id=wid,
            )
        except Exception:  # a closed bus must not break the end of a recording
            log.exception("could not publish a recording event", event_type=event_type)
