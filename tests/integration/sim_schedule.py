"""Windows chosen from the sandbox's own schedule, so that tests needing working machines
pass at any hour: the simulator says when the machines of a customer work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tu_analytics.sandbox.streamer import sim_config_for, simulator_for

_STEP = timedelta(minutes=15)


def busy_window(sandbox: Any, hours: float, customer: str | None = None,
                history: timedelta = timedelta(hours=6)) -> tuple[datetime, datetime]:
    """The ``hours``-long window, inside the sandbox's data and ending at least ``history``
    after its first record and 5 minutes before now, in which the customer's machines work
    most (by the simulator's schedule, sampled every 15 minutes)."""
    state = sandbox.state
    name = customer or sandbox.customers[0]
    sim = simulator_for(state, sim_config_for(sandbox.root))
    span = timedelta(hours=hours)
    first = datetime.fromtimestamp(state.epoch_ms / 1000, UTC) + history + span
    last = datetime.now(UTC) - timedelta(minutes=5)
    t = first - span
    samples: list[tuple[datetime, int]] = []
    while t < last:
        samples.append((t, sum(m.customer == name for m in sim.working(t))))
        t += _STEP
    per = int(span / _STEP)
    best = max(range(per, len(samples) + 1),
               key=lambda i: sum(n for _, n in samples[i - per:i]))
    # The last sample's quarter hour may reach past now: a window never ends in the future.
    end = min(samples[best - 1][0] + _STEP, last)
    if not sum(n for _, n in samples[best - per:best]):
        raise AssertionError(f"{name}: no machine works in any {hours} h window of the data")
    return end - span, end
