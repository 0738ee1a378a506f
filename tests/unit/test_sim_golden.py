"""Golden output of the simulator: a SHA-256 over the encoded stream of a fixed set-up.

The other simulator tests compare runs of the current code with each other, so a change that
shifts every run alike would pass them. This hash pins the bytes themselves. When a change
alters the output on purpose, update ``GOLDEN`` deliberately and say why in the history below.

History:
- 4ac1bb154e13: the simulator as of the first build (European/US day shifts only).
- f493494eeadb: a fleet alive at any hour. Generators and light towers may be on night work
  (every night), 24/7 sites (Newman mine, Rozelle tunnel) work three shifts every day, and
  the golden fleet gained a third customer at those sites. Unchanged by the move of the
  simulator into sandbox/sim/.
- a8e764913130: the published shape. Per-insight value/unit field names, ParsedValue double or
  string, CanMessageValues as three records (plus an accumulated and, from v2, a string
  CAN variable), schema v3 from hour 40, enum insights as strings; delivery from its own
  random stream with coverage outages (late_share), moved-back Kafka timestamps
  (disorder_share) and resends (duplicate_share).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from tu_analytics.sandbox._state import PLATFORM_TOPICS
from tu_analytics.sandbox.fleet import CUSTOMERS, CustomerSpec, build_fleet
from tu_analytics.sandbox.simulator import Simulator

START = datetime(2026, 3, 5, tzinfo=UTC)  # Thursday and Friday
END = START + timedelta(days=2)
SCHEMA_IDS = {("insights", 1): 11, ("insights", 2): 12, ("insights", 3): 13, ("raw", 1): 21}
GOLDEN = "a8e76491313019f0977115f2d7b86dd267c1770b3588a37697aba7545439121c"


def stream_digest() -> tuple[str, int]:
    fleet = build_fleet(5, [
        CustomerSpec("acme-rentals", 10, ("aalborg", "hamburg")),
        CustomerSpec("northwind-build", 8, ("london", "chicago")),
        CustomerSpec("southern-cross-mining", 6, ("newman", "rozelle"), CUSTOMERS[2].type_mix),
    ])
    sim = Simulator(fleet, seed=11, v2_from=START + timedelta(hours=30),
                    v3_from=START + timedelta(hours=40))
    h = hashlib.sha256()
    n = 0
    for batch in sim.encoded_batches(START, END, SCHEMA_IDS, batch_size=5000):
        for key, value, ts, _customer, fmt in batch:
            topic = PLATFORM_TOPICS[fmt].encode()
            for part in (key, value, ts.to_bytes(8, "big", signed=True), topic):
                h.update(len(part).to_bytes(4, "big"))
                h.update(part)
            n += 1
    return h.hexdigest(), n


def test_encoded_stream_matches_the_golden_hash() -> None:
    digest, n = stream_digest()
    assert n > 5000
    assert digest == GOLDEN
