"""The live tail's pump: one asyncio task that redraws widgets from a :class:`LiveTail`.

Part of :mod:`tu_analytics.live` (import from there). The pump reads only what the buffer
guarantees: ``version`` (a cheap "anything new?"), ``frame()`` (a copy), ``error`` and the
``stopped``/``running`` flags.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol, runtime_checkable

import polars as pl

from tu_analytics._live_buffer import LiveTail


class FrameView(Protocol):
    """Anything the pump can refresh with the tail's buffered frame."""

    def update(self, frame: pl.DataFrame) -> None: ...


@runtime_checkable
class StagedView(Protocol):
    """A view that splits an update: ``prepare`` is pure (runs off the loop), ``render`` sends."""

    def prepare(self, frame: pl.DataFrame) -> object: ...

    def render(self, prepared: object) -> None: ...


@runtime_checkable
class ErrorSink(Protocol):
    """A view that can show an error under itself."""

    def show_error(self, error: BaseException, *, context: str = "") -> None: ...


class Pump:
    """Redraws widgets from a :class:`LiveTail` at a fixed low rate, on the kernel's event loop.

    Every ``1 / rate_hz`` seconds the task checks ``tail.version``; only when it changed does it
    take one :meth:`LiveTail.frame` and push it to every widget, so any number of batches between
    two ticks cost one redraw. The frame copy and each widget's pure ``prepare`` step run in a
    worker thread; only ``render``/``update`` (which send widget messages) run on the loop.

    An error raised by a widget is shown under that widget (``show_error``) when it can, else
    kept in :attr:`errors`; it never stops the pump. A tail error is shown the same way once.
    The pump ends by itself after the tail stops and its last data were drawn.
    """

    def __init__(self, tail: LiveTail, *widgets: FrameView, rate_hz: float = 1.0) -> None:
        if not 0 < rate_hz <= 30:
            raise ValueError(f"rate_hz must be in (0, 30], got {rate_hz}")
        self.tail = tail
        self.widgets: tuple[FrameView, ...] = widgets
        self.rate_hz = rate_hz
        self.redraws = 0
        self.ticks = 0
        self.errors: deque[BaseException] = deque(maxlen=20)
        self._task: asyncio.Task[None] | None = None
        self._drawn = -1
        self._tail_error_shown = False

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task[None]:
        """Create the pump task on ``loop`` or on the running loop (in a notebook, the kernel's)."""
        if self._task is not None and not self._task.done():
            return self._task
        if loop is None:
            try:
                # In a notebook even a synchronous cell runs inside the kernel's loop.
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "Pump.start() needs a running event loop: call it from a notebook cell or "
                    "from async code, or pass loop="
                ) from None
        self._task = loop.create_task(self._run(), name="tu-analytics-live-pump")
        return self._task

    def stop(self) -> None:
        """Cancel the pump task (the tail keeps running; stop it separately)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def wait(self) -> None:
        """Wait until the pump ends (after the tail stops, or after :meth:`stop`)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Pump {state} at {self.rate_hz} Hz: {self.redraws} redraws in {self.ticks} ticks>"

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        deadline = loop.time()
        while True:
            # Fixed-rate ticks against absolute deadlines, so slow redraws don't drift the rate.
            deadline += period
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            deadline = max(deadline, loop.time() - period)
            self.ticks += 1
            finished = self.tail.stopped and not self.tail.running
            await self.tick()
            if finished and self._drawn == self.tail.version:
                return

    async def tick(self) -> bool:
        """One pump step: redraw if the tail has anything new. Returns whether it redrew."""
        error = self.tail.error
        if error is not None and not self._tail_error_shown:
            self._tail_error_shown = True
            self._report(error, None, "live tail")
        version = self.tail.version
        if version == self._drawn:
            return False
        frame = await asyncio.to_thread(self.tail.frame)
        for widget in self.widgets:
            try:
                if isinstance(widget, StagedView):
                    prepared = await asyncio.to_thread(widget.prepare, frame)
                    widget.render(prepared)
                else:
                    widget.update(frame)
            except Exception as exc:
                self._report(exc, widget, "live update")
        self._drawn = version
        self.redraws += 1
        return True

    def _report(self, error: BaseException, widget: FrameView | None, context: str) -> None:
        sinks = [widget] if widget is not None else list(self.widgets)
        shown = False
        for sink in sinks:
            if isinstance(sink, ErrorSink):
                sink.show_error(error, context=context)
                shown = True
        if not shown:
            self.errors.append(error)


def bind(tail: LiveTail, *widgets: FrameView, rate_hz: float = 1.0, start: bool = True) -> Pump:
    """Drive ``widgets`` from ``tail`` at ``rate_hz`` redraws per second; returns the pump.

    Starts the tail's thread if needed and the pump task on the current event loop (in a notebook,
    the kernel's). Stop with ``pump.stop()`` and ``tail.stop()``.
    """
    pump = Pump(tail, *widgets, rate_hz=rate_hz)
    if start:
        if not tail.running and not tail.stopped:
            tail.start()
        pump.start()
    return pump
