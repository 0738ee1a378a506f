"""A live view's status line: "last record 12 s ago · 3.2 records/s over the last minute".

The numbers come from the frame the view draws (``kafka_timestamp``, the broker's receipt
time), so they are right whatever the source: a record counts once, at the time it arrived.
The "N s ago" part ticks in the browser every second (a few lines of JavaScript, no plotly),
so a quiet fleet shows its silence growing instead of a frozen number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import anywidget
import polars as pl
import traitlets

__all__ = ["LiveStatus", "Receipt", "format_rate", "receipt"]

#: Records per second are counted over this many seconds before the latest update.
RATE_WINDOW_S = 60.0

_ESM = """
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}
function render({ model, el }) {
  const line = document.createElement("span");
  line.className = "tu-live-status";
  line.style.color = "#444";
  line.style.fontSize = "13px";
  el.appendChild(line);
  function draw() {
    const last = model.get("last_record_ms");
    const head = last > 0 ? "last record " + ago(last) : "no record yet";
    line.textContent = head + " · " + model.get("rate_text");
  }
  model.on("change", draw);
  const timer = setInterval(draw, 1000);
  draw();
  return () => clearInterval(timer);
}
export default { render };
"""


@dataclass(frozen=True, slots=True)
class Receipt:
    """When the newest record arrived and how many arrived per second lately."""

    last_record: datetime | None
    records_per_s: float
    window_s: float
    as_of: datetime

    @property
    def text(self) -> str:
        rate = f"{format_rate(self.records_per_s)} records/s over the last {self.window_s:.0f} s"
        return f"{rate} (at {self.as_of.strftime('%H:%M:%S')} UTC)"


def format_rate(per_s: float) -> str:
    """Records per second for people: two significant digits below 10, so a quiet fleet's one
    record a minute reads "0.017", not "0.0"; "0" only when nothing arrived."""
    if per_s == 0:
        return "0"
    return f"{per_s:.2g}" if per_s < 10 else f"{per_s:.0f}"


def receipt(
    frame: pl.DataFrame, *, now: datetime | None = None, window_s: float = RATE_WINDOW_S
) -> Receipt:
    """The :class:`Receipt` of ``frame`` as of ``now`` (default: the wall clock), pure."""
    as_of = now or datetime.now(UTC)
    if frame.is_empty() or "kafka_timestamp" not in frame.columns:
        return Receipt(None, 0.0, window_s, as_of)
    received = frame.get_column("kafka_timestamp").cast(pl.Datetime("ms", "UTC"))
    last = received.max()
    start = as_of.timestamp() - window_s
    recent = received.dt.epoch("ms").filter(
        (received.dt.epoch("ms") > start * 1000)
        & (received.dt.epoch("ms") <= as_of.timestamp() * 1000)
    )
    return Receipt(
        last if isinstance(last, datetime) else None, recent.len() / window_s, window_s, as_of
    )


class LiveStatus(anywidget.AnyWidget):
    """The status line; ``update(frame)`` with the frame a live view draws."""

    _esm = _ESM
    last_record_ms = traitlets.Float(0.0).tag(sync=True)
    rate_text = traitlets.Unicode("").tag(sync=True)

    def update(self, frame: pl.DataFrame, *, now: datetime | None = None) -> Receipt:
        got = receipt(frame, now=now)
        with self.hold_sync():
            self.last_record_ms = got.last_record.timestamp() * 1000 if got.last_record else 0.0
            self.rate_text = got.text
        return got
