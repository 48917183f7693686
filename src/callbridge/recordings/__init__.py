"""Call recordings: the model, its repository, the recording service and the flow actions.

* :mod:`.model` — :class:`~callbridge.recordings.model.Recording` and its state table;
* :mod:`.repos` — :class:`~callbridge.recordings.repos.RecordingRepository` (``store.recordings``);
* :mod:`.recorder` — one live recording: a 2-channel WAV of the caller (left) and of what the
  platform played (right), written off the event loop;
* :mod:`.service` — :class:`~callbridge.recordings.service.RecordingService`: start, stop,
  limits, events;
* :mod:`.actions` — the ``recording_start`` / ``recording_stop`` flow actions (registered by the
  composition root).
"""
