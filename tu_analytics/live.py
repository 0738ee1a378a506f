"""The live tail: a consumer thread fills a bounded buffer; an asyncio pump feeds widgets.

::

    BatchSource.poll() --daemon thread--> LiveTail buffer --asyncio task, ~1 Hz--> widget.update()
                                          (capped history +   (coalesced: one redraw per tick,
                                           latest per machine) only when something arrived)

Two rules keep a notebook responsive (see the notes on live widgets):

* the thread only touches the buffer, never a widget: widget messages from background threads
  are unreliable across ipykernel versions, and a per-record update floods IOPub;
* widgets are driven from one task on the kernel's own event loop, at a low fixed rate, and the
  heavy frame work of each tick runs in a worker thread so the loop stays free between ticks.

The Kafka side is not here: anything with ``poll(timeout)`` returning a flattened Machine Insights
``main`` frame (docs/frames.md) and ``close()`` is a :class:`BatchSource`; a source may also offer
``take_errors()`` (records it could not decode) and ``positions`` (where to resume).

The buffer lives in :mod:`tu_analytics._live_buffer`, the pump in :mod:`tu_analytics._live_pump`;
this module is their public face.
"""

from __future__ import annotations

from tu_analytics._live_buffer import BatchSource, LiveTail, TailStats, latest_per_machine
from tu_analytics._live_pump import ErrorSink, FrameView, Pump, StagedView, bind

__all__ = [
    "BatchSource",
    "ErrorSink",
    "FrameView",
    "LiveTail",
    "Pump",
    "StagedView",
    "TailStats",
    "bind",
    "latest_per_machine",
]
