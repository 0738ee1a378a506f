"""tu_analytics.sites: a site for every row whose machine's place is known, stable over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from tu_analytics.sites import (
    assign_sites,
    machine_zones,
    merge_anchors,
    nearest_place,
    position_label,
    site_anchors,
    sites_at,
    zone_at,
)

T0 = datetime(2026, 11, 27, 6, tzinfo=UTC)


Row = tuple[str | None, int, str | None, float | None, float | None]


def frame(rows: list[Row]) -> pl.DataFrame:
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


def test_a_cell_is_named_by_the_city_first_reported_there_most_recently() -> None:
    main = frame(
        [
            ("a", 0, "Nordhavn", 55.7113, 12.5955),
            ("b", 1, "Østerbro", 55.7114, 12.5956),
            ("a", 2, "Nordhavn", 55.7113, 12.5955),  # reported again: not new, changes nothing
            ("c", 3, None, 55.7115, 12.5957),
        ]
    )
    assert assign_sites(main).get_column("site").to_list()[-1] == "Østerbro"


def sites_example() -> pl.DataFrame:
    return frame(
        [
            ("a", 0, None, 55.7113, 12.5955),
            ("b", 1, None, 55.7121, 12.5960),
            ("a", 2, "Nordhavn", None, None),
            ("b", 2, None, None, None),
            ("c", 3, None, 55.7200, 12.6050),  # the next cell east-north: a neighbour
            ("a", 4, "Nordhavn", 55.7113, 12.5955),
            ("d", 5, None, 56.16, 10.22),
            ("d", 6, "Aarhus C", 56.16, 10.22),
            ("e", 7, None, 56.1601, 10.2201),
            (None, 8, "Ghost", 55.7122, 12.5961),  # no machine: reports to nobody
            ("b", 9, None, 55.7122, 12.5961),
        ]
    )


def test_machine_groups_get_the_whole_frames_sites_from_its_anchors() -> None:
    main = sites_example()
    whole = assign_sites(main)
    anchors = site_anchors(main)
    assert anchors.columns == ["cy", "cx", "City", "first"]
    assert sorted(anchors["City"]) == ["Aarhus C", "Nordhavn"]
    groups = [main.filter(pl.col("MachineId").is_in(g)) for g in (["a", "d"], ["b", "c", "e"])]
    for group in groups:
        got = assign_sites(group, anchors=anchors)
        assert got.equals(whole.filter(pl.col("MachineId").is_in(group["MachineId"].unique())))
    # alone, a group lacks the other machines' Cities
    alone = assign_sites(groups[1]).get_column("site").to_list()
    assert "Nordhavn" not in alone
    assert "Aarhus C" not in alone
    assert merge_anchors(pl.concat([site_anchors(g) for g in groups])).equals(anchors)
    assert whole.get_column("site").to_list() == [
        "København",
        "København",
        "Nordhavn",
        "Nordhavn",  # b's position carried, a's too: a named their cell at the same time
        "Nordhavn",  # 1 km north-east: a neighbouring cell
        "Nordhavn",
        "56.2°N 10.2°E",
        "Aarhus C",
        "Aarhus C",
        "Ghost",
        "Nordhavn",
    ]


def test_sites_do_not_depend_on_row_order() -> None:
    main = sites_example()
    shuffled = main.with_row_index("i").sample(fraction=1.0, shuffle=True, seed=3)
    got = assign_sites(shuffled.drop("i")).with_columns(shuffled["i"]).sort("i").drop("i")
    assert got.equals(assign_sites(main))


def test_sites_at_a_time_are_the_sites_of_the_last_row_known_by_then() -> None:
    main = sites_example().filter(pl.col("MachineId").is_not_null())
    rows = assign_sites(main).select("MachineId", "kafka_timestamp", "site")
    # a and b share minute 2: b's row is the last of b's at that minute, a's of a's
    assert sites_at(main, known_at="kafka_timestamp").sort("MachineId", "kafka_timestamp").equals(
        rows.sort("MachineId", "kafka_timestamp")
    )
    stamps = main.with_columns(pl.col("kafka_timestamp").dt.truncate("1h").alias("hour"))
    hourly = sites_at(stamps, known_at="hour")
    assert hourly.columns == ["MachineId", "hour", "site"]
    assert dict(hourly.select("MachineId", "site").iter_rows()) == {
        "a": "Nordhavn",
        "b": "Nordhavn",
        "c": "Nordhavn",
        "d": "Aarhus C",
        "e": "Aarhus C",
    }
