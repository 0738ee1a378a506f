from __future__ import annotations

import warnings

import polars as pl
import pytest

from tu_analytics import UnknownMachineWarning
from tu_analytics._machines import known_names, resolve, select

A = "1f0c3a52-7d7e-4c1e-9a51-3f5b2c8d9e01"
B = "1f0c3a52-7d7e-4c1e-9a51-3f5b2c8d9e02"
C = "77777777-0000-4000-8000-000000000000"

MAIN = pl.DataFrame(
    {
        "MachineId": [A, A, B, C, C],
        "EquipmentID": ["EX-001", None, "EX-002", "GEN-7", "GEN-7"],
        "offset": [0, 1, 2, 3, 4],
    }
)


def test_ids_and_equipment_ids_both_select_machines() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select(MAIN, [A], "MachineId")["offset"].to_list() == [0, 1]
        # A row whose EquipmentHeader was absent still belongs to its machine.
        assert select(MAIN, ["EX-001"], "MachineId")["offset"].to_list() == [0, 1]
        assert select(MAIN, ["ex-002", "GEN-7"], "MachineId")["offset"].to_list() == [2, 3, 4]
        assert select(MAIN, [A.upper()], "MachineId")["offset"].to_list() == [0, 1]


def test_an_unknown_name_warns_with_close_matches() -> None:
    typo = A[:-1] + "9"  # one wrong character
    with pytest.warns(UnknownMachineWarning, match="did you mean") as rec:
        out = select(MAIN, [typo, "EX-01", "EX-002"], "MachineId")
    assert out["offset"].to_list() == [2]
    w = rec[0].message
    assert isinstance(w, UnknownMachineWarning)
    assert w.unknown == (typo, "EX-01")
    assert A in w.close[typo]
    assert "EX-001" in w.close["EX-01"]
    assert rec[0].filename == __file__


def test_nothing_close_still_warns_and_returns_no_rows() -> None:
    with pytest.warns(UnknownMachineWarning) as rec:
        assert select(MAIN, ["bulldozer"], "MachineId").height == 0
    assert rec[0].message.close == {"bulldozer": []}  # type: ignore[union-attr]


def test_raw_frames_match_machine_ids_only() -> None:
    raw = pl.DataFrame({"machineId": [A, B], "offset": [0, 1]})
    assert select(raw, [B], "machineId")["offset"].to_list() == [1]
    with pytest.warns(UnknownMachineWarning):
        select(raw, ["EX-001"], "machineId")


def test_resolution_is_pure() -> None:
    names = known_names(MAIN, "MachineId")
    assert names["EX-001"] == {A}
    res = resolve(["gen-7", "nope"], names)
    assert res.ids == frozenset({C})
    assert res.unknown == ("nope",)
