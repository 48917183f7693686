"""SIGINT/SIGTERM handling on the running event loop, shared by long-running commands.

Subclasses decide what a signal means (``on_signal``); this class only installs and removes
the loop's handlers, so a command never leaves a stale handler behind.
"""

from __future__ import annotations

import asyncio
import signal

#: The signals that ask a callbridge process to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignalHandler:
    """Routes SIGINT/SIGTERM to :meth:`on_signal` while installed. ``remove`` is idempotent."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        """Install the handlers on the running loop (call from inside it)."""
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self.on_signal, sig)

    def remove(self) -> None:
        if self._loop is not None:
            for sig in STOP_SIGNALS:
                self._loop.remove_signal_handler(sig)
            self._loop = None

    def on_signal(self, sig: signal.Signals) -> None:
        """What a stop signal does; subclasses override it."""
        raise NotImplementedError
