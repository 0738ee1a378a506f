"""Simulated Trackunit telemetry: Machine Insights and RAW records for the sandbox.

The model, per machine and *local* calendar day (the home site's time zone):

1. **Plan** the day from its start state: does the machine work today (weekday/weekend odds,
   its own utilisation, weeks off rent), shift times, lunch, alternating working/idle blocks,
   engine-off pauses, a relocation to another site, overnight charging for electric lifts.
   The plan is a list of contiguous *segments*; each carries the value of every cumulative
   counter at its start and a constant rate, so a counter at any instant is
   ``start + rate * (t - t0)``: counters cannot decrease and every message reports values
   consistent with every other message. Refuels and DEF top-ups happen at segment starts.
2. **Messages** of the day: times follow the state (every 1-2 min working, ~5 min idle,
   30-60 min heartbeats off, an immediate message at ignition/work changes); each message
   carries a random, state-dependent subset of the machine's insights. Each has a receipt
   delay (seconds; ~1 % minutes to hours late), which makes the Kafka timestamp.
3. **Delivery** as a real topic sees it, set by one frozen ``SimConfig(late_share=0.03,
   disorder_share=0.03, duplicate_share=0.005, clock_offset=timedelta(0))``: coverage outages
   whose backlog uploads hours late, Kafka timestamps moved back by seconds to minutes (a
   parallel ingestion job), device resends (the same bytes on a new offset).

The published shape (``schemas/generate.py``): per-insight value and unit field names,
``ParsedValue`` double or string, ``CanMessageValues`` one of three records (written as tagged
values ``(branch name, record)``), insights schema v1, v2 (from ``v2_from``) and v3 (from
``v3_from``), chosen by a message's first delivery time.

Hours: most sites work weekday day shifts in local time, but a share of generators and light
towers is on night work (every night), and machines at ``"24/7"`` sites (a Pilbara mine, a
Sydney tunnel) work three shifts round the clock every day. So some machines are working at
any UTC hour of any weekday; :meth:`Simulator.working` says which, from the schedule alone.

The sandbox clock: ``SimConfig(clock_offset=d)`` makes the fleet at real instant ``t`` behave as
it would at ``t + d`` (its local calendar, weekdays and shifts are read at ``t + d``), while
every timestamp it writes (receipt = Kafka timestamp, and measurement) stays real, so
``last=`` windows keep working. The sandbox streamer sets it from ``TU_SANDBOX_CLOCK`` (or
``--clock``): an ISO-8601 instant with an offset, e.g. ``2026-03-04T10:00:00+00:00``, meaning
"now is that instant" at the streamer's first start; the offset (whole minutes) is kept in
``streamer.json`` so restarts replay the same stream. Unset, the offset is zero.

Two clocks: ``SimRecord.receipt_ms`` (and the Kafka timestamp a producer should use) is when
the platform received the record; every ``datetime`` in the payload is when it was measured.

Layout (small pure modules; only ``simulator`` holds state):

- ``config``: ``SimConfig``, the clock offset, delay constants;
- ``model``: states, counter slots and the per-machine records; ``rand``: stable randomness;
- ``behaviour``: working hours per type and site; ``calendar``: local days on the sandbox clock;
- ``plan`` (a day's blocks, spots, faults) and ``physics`` (segments and counter rates);
- ``faults``; ``units`` (static per machine); ``geo``;
- message building per format: ``messages`` (times, receipt, position), ``insights``
  (Machine Insights content) and ``raw`` (RAW rows);
- ``simulator``: merges all machines into one receipt-ordered stream, records or encoded.
"""

from __future__ import annotations

from .config import DEFAULT_EPOCH, LATE_SHARE, MAX_DELAY_MS, SimConfig, clock_offset
from .geo import geohash
from .simulator import SimFormat, SimRecord, Simulator, load_schemas

__all__ = [
    "DEFAULT_EPOCH",
    "LATE_SHARE",
    "MAX_DELAY_MS",
    "SimConfig",
    "SimFormat",
    "SimRecord",
    "Simulator",
    "clock_offset",
    "geohash",
    "load_schemas",
]
