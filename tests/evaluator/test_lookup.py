"""Lookup of a declared space in the user's tables (evaluator.pools.lookup): joins, scales, goals, and
every malformed table refused with the file, the line or record, the column and the fix."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from evaluator.errors import TableError
from evaluator.pools.lookup import Lookup
from evaluator.pools.base import Job
from evaluator.records import Purpose, Status
from evaluator.spaces.declared import DeclaredSpace
from evaluator.spaces.declared.file import load_space_file
from tests.evaluator.test_declared_space import BLOCKS, small_space_text, write

LOOKUP = '\n[lookup]\nkey = "{b1}-{b2}-{b3}-{b4}-{b5}-{b6}"\nkey_column = "arch"\nsignal = "val"\nreport = "test"\n'


def score(combo: tuple[str, ...]) -> float:
    """A made-up accuracy in percent: convolutions help, the later the more."""
    return round(40 + sum((i + 1) * (2.0 if b == "conv3" else 1.5 if b == "conv5" else 0.0)
                          for i, b in enumerate(combo)), 3)


def write_space(folder: Path, lookup: str = LOOKUP, rows: list[tuple[str, ...]] | None = None,
                extra_columns: dict[str, object] | None = None) -> Path:
    """The six-blocks space with a CSV of every combination (or ``rows``): arch, val, test, params."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows if rows is not None else list(itertools.product(BLOCKS, repeat=6))
    lines = ["arch,val,test,params" + "".join(f",{k}" for k in extra_columns or {})]
    for combo in rows:
        lines.append(f"{'-'.join(combo)},{score(combo)},{score(combo) + 1.5},{1000 * combo.count('conv5') + 10}"
                     + "".join(f",{v}" for v in (extra_columns or {}).values()))
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    return write(folder, small_space_text() + lookup.replace('signal', 'tables = ["results.csv"]\nsignal', 1))


def lookup_of(path: Path, tables: list[Path] | None = None) -> Lookup:
    file = load_space_file(path)
    return Lookup(DeclaredSpace(file), file.lookup, tables)


def job(spec: dict, purpose: Purpose = Purpose.SEARCH) -> Job:
    return Job(candidate_id="r-c0001", spec=spec, purpose=purpose)


def test_a_row_is_found_by_its_key_and_percent_becomes_a_fraction(tmp_path):
    lookup = lookup_of(write_space(tmp_path))
    spec = dict(zip([f"b{i}" for i in range(1, 7)], ("conv3", "skip", "conv5", "conv3", "skip", "conv5")))
    combo = tuple(spec.values())
    search = lookup.evaluate(job(spec))
    assert search.status is Status.OK and search.val_accuracy == pytest.approx(score(combo) / 100)
    assert search.test_accuracy is None and search.curve[0].val_accuracy == search.val_accuracy
    final = lookup.evaluate(job(spec, Purpose.FINAL))
    assert final.test_accuracy == pytest.approx((score(combo) + 1.5) / 100) and "test from results.csv" in final.source
    assert len(lookup.combinations()) == 729


def test_tables_join_on_the_key_and_metrics_become_objective_values(tmp_path):
    folder = tmp_path / "s"
    path = write_space(folder, LOOKUP.replace('report = "test"', 'report = "final"\nmetrics = { params = "params" }'))
    final = {"-".join(c): {"final": score(c) / 100} for c in itertools.product(BLOCKS, repeat=6)}
    (folder / "final.json").write_text(json.dumps(final))
    lookup = lookup_of(path, [folder / "results.csv", folder / "final.json"])
    spec = {f"b{i}": "conv5" for i in range(1, 7)}
    out = lookup.evaluate(job(spec, Purpose.FINAL))
    assert out.test_accuracy == pytest.approx(score(("conv5",) * 6) / 100) and out.metrics == {"params": 6010}


def test_one_column_per_slot_and_an_error_rate_to_minimise(tmp_path):
    rows = [",".join(c) + f",{1 - score(c) / 100:.5f}" for c in itertools.product(BLOCKS, repeat=6)]
    (tmp_path / "sweep.csv").write_text("b1,b2,b3,b4,b5,b6,error\n" + "\n".join(rows) + "\n")
    path = write(tmp_path, small_space_text() + '\n[lookup]\ntables = ["sweep.csv"]\nsignal = "error"\ngoal = "minimize"\n')
    lookup = lookup_of(path)
    best = {f"b{i}": "conv3" for i in range(1, 7)}
    assert lookup.evaluate(job(best)).val_accuracy == pytest.approx(score(("conv3",) * 6) / 100, abs=1e-5)
    final = lookup.evaluate(job(best, Purpose.FINAL))
    assert final.status is Status.OK and final.test_accuracy is None and "no report column" in final.source


def test_a_missing_column_names_the_tables_their_columns_and_the_fix(tmp_path):
    with pytest.raises(TableError) as info:
        lookup_of(write_space(tmp_path, LOOKUP.replace('signal = "val"', 'signal = "vall"')))
    assert "signal column 'vall' (did you mean 'val'?) is in none of the tables (results.csv: arch, val, test, params)" \
        in info.value.message and "set signal under [lookup] in space.toml" in info.value.hint


def test_an_unknown_choice_in_the_table_names_file_line_column_and_fix(tmp_path):
    rows = [("conv3",) * 6, ("conv3",) * 5 + ("conv7",)]
    with pytest.raises(TableError) as info:
        lookup_of(write_space(tmp_path, rows=rows))
    assert f"table {tmp_path / 'results.csv'} line 3, column arch: 'conv7' is not a choice of slot b6" \
           " (did you mean 'conv5'?) (its choices: conv3, conv5, skip)" in info.value.message
    assert "add the value to choices under [slots.b6] in space.toml" in info.value.hint


def test_duplicate_keys_name_both_lines(tmp_path):
    with pytest.raises(TableError) as info:
        lookup_of(write_space(tmp_path, rows=[("conv3",) * 6, ("skip",) * 6, ("conv3",) * 6]))
    assert "line 2 and line 4 hold the same key (b1=conv3 b2=conv3" in info.value.message
    assert "one row per combination" in info.value.hint


def test_a_key_that_does_not_match_the_template_and_a_value_that_is_not_a_number(tmp_path):
    path = write_space(tmp_path)
    csv = tmp_path / "results.csv"
    csv.write_text(csv.read_text().replace("conv3-conv3-conv3-conv3-conv3-conv3,", "conv3/conv3,", 1))
    with pytest.raises(TableError, match=r"line \d+, column arch: key 'conv3/conv3' does not match the template"):
        lookup_of(path)
    path = write_space(tmp_path / "b")
    csv = tmp_path / "b" / "results.csv"
    lines = csv.read_text().splitlines()
    cells = lines[5].split(",")
    lines[5] = ",".join([cells[0], "n/a", *cells[2:]])  # the val column of file line 6
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError, match=r"line 6, column val: 'n/a' is not a number"):
        lookup_of(path)


def test_values_outside_an_accuracy_and_json_records_are_named(tmp_path):
    with pytest.raises(TableError) as info:
        lookup_of(write_space(tmp_path, LOOKUP.replace('scale', '') + 'scale = "fraction"\n'))
    assert "is not an accuracy in fraction (0-1)" in info.value.message and "scale" in info.value.hint
    records = [{"b1": "conv3", "b2": "conv3", "b3": "conv3", "b4": "conv3", "b5": "conv3", "b6": "conv3", "acc": 0.5},
               {"b1": "conv3", "b2": "conv3", "b3": "conv3", "b4": "conv3", "b5": "conv3", "b6": "conv9", "acc": 0.5}]
    (tmp_path / "r.json").write_text(json.dumps(records))
    path = write(tmp_path, small_space_text() + '\n[lookup]\ntables = ["r.json"]\nsignal = "acc"\n', "j.toml")
    with pytest.raises(TableError, match=r"r.json record 2, column b6: 'conv9' is not a choice of slot b6"):
        lookup_of(path)


def test_a_combination_the_table_lacks_fails_with_the_reason(tmp_path):
    lookup = lookup_of(write_space(tmp_path, rows=[("conv3",) * 6]))
    out = lookup.evaluate(job({f"b{i}": "skip" for i in range(1, 7)}))
    assert out.status is Status.FAILED and "skip-skip-skip-skip-skip-skip: no row in" in out.error


def test_no_table_at_all_says_where_to_give_one(tmp_path):
    path = write(tmp_path, small_space_text() + '\n[lookup]\nsignal = "val"\n')
    with pytest.raises(TableError, match="names no table, and no --table was given") as info:
        lookup_of(path)
    assert "--table FILE" in info.value.hint
