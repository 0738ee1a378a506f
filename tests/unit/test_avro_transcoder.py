"""The compiled transcoder (tu_analytics._native) and the insight rule it is driven by."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fastavro
import pytest

from tu_analytics._avro import confluent_header
from tu_analytics._decode import handoff, planning
from tu_analytics.formats.machine_insights import insight_layout


@pytest.fixture(scope="module")
def nat() -> Any:
    module = planning.native_module()
    assert module is not None, "tu_analytics._native: run `make native`"
    return module


def body(schema: Any, rec: Any) -> bytes:
    buf = io.BytesIO()
    buf.write(confluent_header(1))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), rec)
    return buf.getvalue()


def test_a_multi_branch_union_becomes_one_nullable_field_per_branch(nat: Any) -> None:
    prog = nat.Program(("split", [("null",), ("double",), ("string",)]))
    values = [body(["null", "double", "string"], v) for v in (None, 2.5, "on")]
    data, bad, seen = nat.transcode(prog, values, 5, b"|")
    assert (bad, seen) == ([], [])
    # null -> outer null; double -> [present, double set, string null]; string likewise.
    assert data == (values[0][:5] + b"\x00|"
                    + values[1][:5] + b"\x02\x02" + values[1][6:] + b"\x00|"
                    + values[2][:5] + b"\x02\x00\x02" + values[2][6:] + b"|")


def test_dropped_unit_fields_are_kept_once(nat: Any) -> None:
    schema = {"type": "record", "name": "I", "fields": [
        {"name": "rpm", "type": "double"}, {"name": "unit", "type": ["null", "string"]},
        {"name": "datetime", "type": "long"}]}
    prog = nat.Program(("record", [(("double",), False),
                                   (("union", [("null",), ("string",)]), True),
                                   (("long",), False)]))
    assert prog.slots == 1
    values = [body(schema, {"rpm": 1.0, "unit": u, "datetime": 5}) for u in (None, "rpm", "x")]
    data, bad, seen = nat.transcode(prog, values, 5, b"")
    assert bad == []
    assert seen == ["rpm"]
    assert data == b"".join(v[:5] + v[5:13] + b"\x0a" for v in values)


@pytest.mark.parametrize("cut", [1, 3, 7])
def test_every_malformed_body_is_named(nat: Any, cut: int) -> None:
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "s", "type": "string"}, {"name": "e", "type": {
            "type": "enum", "name": "E", "symbols": ["A", "B"]}},
        {"name": "a", "type": {"type": "array", "items": "long"}}]}
    prog = nat.Program(("record", [(("string",), False), (("enum", 2), False),
                                   (("array", ("long",)), False)]))
    good = body(schema, {"s": "héllo", "e": "B", "a": [1, 2, 3]})
    bad_enum = good[:5] + b"\x0ah\xc3\xa9llo" + b"\x04" + good[13:]
    bad_utf8 = good[:5] + b"\x0ah\xc3\x28llo" + good[12:]
    values = [good, good[:-cut], good + b"\x00", bad_enum, bad_utf8, good]
    data, bad, _ = nat.transcode(prog, values, 5, b"|")
    assert bad == [1, 2, 3, 4]
    assert data == good + b"|" + good + b"|"


def test_random_bytes_never_crash_and_valid_ones_match_fastavro(nat: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "v", "type": ["null", "double", "string"]},
        {"name": "m", "type": {"type": "map", "values": "int"}}]}
    prog = nat.Program(("record", [(("split", [("null",), ("double",), ("string",)]), False),
                                   (("map", ("int",)), False)]))
    parsed = fastavro.parse_schema(schema)
    rng = random.Random(3)
    values = [confluent_header(1) + rng.randbytes(rng.randrange(0, 40)) for _ in range(3000)]
    _, bad, _ = nat.transcode(prog, values, 5, b"")
    for i, v in enumerate(values):
        buf = io.BytesIO(v[5:])
        try:
            fastavro.schemaless_reader(buf, parsed, None)
            ok = buf.tell() == len(v) - 5
        except Exception:
            ok = False
        assert ok == (i not in set(bad)), v


def test_unknown_program_kinds_are_refused(nat: Any) -> None:
    with pytest.raises(ValueError, match="unknown node kind"):
        nat.Program(("decimal128",))


@pytest.mark.parametrize(("kinds", "value_type", "want"), [
    ({"engineSpeed": "double", "unit": "string", "datetime": "count"}, "double",
     ("engineSpeed", "unit")),
    ({"UnitOfMeasure": "string", "level": "count", "datetime": "count"}, "double",
     ("level", "UnitOfMeasure")),
    ({"state": "string", "unit": "string", "datetime": "count"}, "enum", ("state", "unit")),
    ({"unitState": "string", "label": "string", "datetime": "count"}, "enum",
     ("label", "unitState")),  # a name containing "unit" wins the tie for the unit
    ({"Hour": "double", "datetime": "count"}, "double", ("Hour", None)),
    ({"on": "boolean", "note": "string", "datetime": "count"}, None, ("on", "note")),
    ({"on": "boolean", "unit": "null", "datetime": "count"}, None, ("on", "unit")),
    ({"value": "double", "unit": "string"}, "double", None),  # no measurement time
    ({"a": "double", "b": "double", "datetime": "count"}, "double", None),  # unit not a string
    ({"flag": "boolean", "datetime": "count"}, "double", None),  # wrong value type
])
def test_insight_layout_rule(kinds: dict[str, str], value_type: Any, want: Any) -> None:
    assert insight_layout(kinds, value_type) == want


def test_handoff_drops_only_insight_units_of_insight_schemas() -> None:
    rec = {"type": "record", "name": "EngineSpeedInsight", "fields": [
        {"name": "engineSpeed", "type": ["null", "double"]},
        {"name": "UnitOfMeasure", "type": ["null", "string"]},
        {"name": "datetime", "type": ["null", "long"]}]}
    insights = {"type": "record", "name": "MachineInsightsMessage", "namespace": "n", "fields": [
        {"name": "Metadata", "type": ["null", {"type": "record", "name": "Metadata", "fields": [
            {"name": "MachineId", "type": "string"}]}]},
        {"name": "EngineSpeed", "type": ["null", rec]},
        {"name": "Speed", "type": ["null", "n.EngineSpeedInsight"]},
        {"name": "Location", "type": ["null", {"type": "record", "name": "L", "fields": [
            {"name": "Latitude", "type": "double"}, {"name": "datetime", "type": "long"},
            {"name": "City", "type": "string"}, {"name": "Zip", "type": "string"}]}]}]}
    assert handoff.unit_fields(insights) == {"EngineSpeed": "UnitOfMeasure",
                                             "Speed": "UnitOfMeasure"}
    raw = {**insights, "name": "RawMessage", "fields": [
        {"name": "unitId", "type": "long"}, *insights["fields"][1:]]}
    assert handoff.unit_fields(raw) == {}
    assert handoff.unit_fields(json.loads('"string"')) == {}


def test_build_native_without_cargo_leaves_the_fallback(tmp_path: Path) -> None:
    """``make setup`` on a machine with no Rust toolchain still succeeds."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "build-native"
    bash = shutil.which("bash")
    assert bash is not None
    # A PATH with the basic tools but no cargo.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "cp", "mv"):
        found = shutil.which(tool)
        assert found is not None
        (bindir / tool).symlink_to(found)
    out = subprocess.run([bash, str(script)], env={"PATH": str(bindir), "HOME": str(tmp_path)},
                         capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no cargo" in out.stdout
