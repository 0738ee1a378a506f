"""tu_analytics.sites: a site for every row whose machine's place is known, stable over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from tu_analytics.sites import assign_sites, machine_zones, nearest_place, position_label, zone_at

T0 = datetime(2026, 11, 27, 6, tzinfo=UTC)


def frame(rows: list[tuple[str, int, str | None, float | None, float | None]]) -> pl.DataFrame:
    """Rows of (machine, minutes after T0, City, lat, lon)."""
    return pl.DataFrame(
        {
            "MachineId": [r[0] for r in rows],
            "kafka_timestamp": [T0 + timedelta(minutes=r[1]) for r in rows],
            "City": [r[2] for r in rows],
            "Latitude": [r[3] for r in rows],
            "Longitude": [r[4] for r in rows],
        },
        schema_overrides={"kafka_timestamp": pl.Datetime("ms", "UTC"), "City": pl.String},
    )


def test_site_is_set_wherever_city_is_and_carried_forward() -> None:
    main = frame(
        [
            ("a", 0, None, None, None),  # nothing known yet
            ("a", 1, "Aarhus C", None, None),
            ("a", 2, None, None, None),  # carried from the machine's own City
            ("b", 3, None, 52.533, 13.368),  # no City anywhere near: Natural Earth place
            ("c", 4, None, 56.16, 10.22),  # no City known for c, nor near it yet
        ]
    )
    got = assign_sites(main)
    assert got.columns == [*main.columns, "site"]
    assert got.get_column("site").to_list() == [
        None,
        "Aarhus C",
        "Aarhus C",
        "Berlin",
        "56.2°N 10.2°E",
    ]


def test_machines_at_one_site_share_its_name_as_soon_as_one_reported_it() -> None:
    main = frame(
        [
            ("a", 0, None, 55.7113, 12.5955),
            ("a", 1, "Nordhavn", None, None),
            ("b", 2, None, 55.7121, 12.5960),  # 100 m away, never reported a City
        ]
    )
    assert assign_sites(main).get_column("site").to_list() == [
        "København",  # before anyone named the site: the Natural Earth place
        "Nordhavn",
        "Nordhavn",
    ]


def test_later_rows_never_rewrite_earlier_sites() -> None:
    early = frame([("a", 0, None, 56.16, 10.22), ("a", 5, None, None, None)])
    later = pl.concat([early, frame([("a", 10, "Aarhus C", None, None)])])
    assert (
        assign_sites(later).head(early.height).get_column("site").to_list()
        == assign_sites(early).get_column("site").to_list()
    )


def test_rows_keep_their_order_and_an_old_site_column_is_replaced() -> None:
    main = frame([("b", 5, "Odense C", None, None), ("a", 0, "Aalborg", None, None)])
    got = assign_sites(main.with_columns(pl.lit("old").alias("site")))
    assert got.get_column("site").to_list() == ["Odense C", "Aalborg"]
    assert assign_sites(pl.DataFrame()).columns == ["site"]


def test_places_and_zones() -> None:
    assert nearest_place(52.53, 13.37) == "Berlin"
    assert nearest_place(0.5, -30.0) == position_label(0.5, -30.0) == "0.5°N 30.0°W"
    assert zone_at([56.16, 41.85, 39.74], [10.22, -87.6, -104.99]) == [
        "Europe/Copenhagen",
        "America/Chicago",
        "America/Denver",
    ]
    zones = machine_zones(frame([("a", 0, None, 56.16, 10.22), ("z", 1, None, 0.0, 0.0)]))
    assert zones.rows() == [("a", "Europe/Copenhagen")]
