"""Loading NAS-Bench-201 tables: percent -> fraction, clear errors on malformed files, caching."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluator.errors import TableError
from evaluator.tables.nb201 import (
    SIGNAL_TABLE_NAME,
    coverage_note,
    final_column,
    final_table_name,
    load_final_table,
    load_signal_table,
)
from evaluator.spaces.nb201 import NUM_CELLS

A0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
A1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
A2 = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
HEADER = "index,arch,cifar10-test,cifar10-val,cifar100-test,cifar100-val,imagenet-test,imagenet-val"


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def signal(tmp_path: Path, *rows: str, header: str = HEADER, name: str = SIGNAL_TABLE_NAME) -> Path:
    return write(tmp_path / name, header, *rows)


def good_rows() -> list[str]:
    return [
        f"0,{A0},69.55,63.36,31.26,31.84,17.0,18.47",
        f"1,{A1},88.22,82.834,58.26,57.8,33.8,35.43",
        f"2,{A2},10.0,10.0,1.0,1.0,0.83,0.83",
    ]


def load_error(path: Path, dataset: str = "cifar10") -> TableError:
    with pytest.raises(TableError) as info:
        load_signal_table(path, dataset)
    return info.value


# --- the real table ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cifar10(nb201_dir):
    return load_signal_table(nb201_dir / SIGNAL_TABLE_NAME, "cifar10")


def test_real_signal_table_converts_percent_to_fraction(real_cifar10):
    val = real_cifar10.column("cifar10-val")
    test = real_cifar10.column("cifar10-test")
    assert val[A1] == pytest.approx(0.8283399999389648, rel=1e-12)
    assert test[A1] == pytest.approx(0.8822, rel=1e-12)
    assert val[A0] == pytest.approx(0.6336399998046875, rel=1e-12)
    assert len(real_cifar10) == NUM_CELLS and coverage_note(real_cifar10) is None
    assert set(real_cifar10.columns) == {"cifar10-val", "cifar10-test"}
    assert all(0.0 <= v <= 1.0 for v in val.values())


def test_real_final_table_converts_percent_to_fraction(nb201_dir):
    path = nb201_dir / final_table_name("cifar10")
    assert final_column(path) == "cifar10_test_200ep"
    table = load_final_table(path)
    col = table.column("cifar10_test_200ep")
    assert col[A1] == pytest.approx(0.9366, rel=1e-12)
    assert len(col) == NUM_CELLS
    assert max(col.values()) == pytest.approx(0.9437, abs=1e-4)


def test_real_table_is_cached_by_file_identity(nb201_dir, real_cifar10):
    assert load_signal_table(nb201_dir / SIGNAL_TABLE_NAME, "cifar10") is real_cifar10


# --- small tables -----------------------------------------------------------------------


def test_small_table_loads_as_fractions(tmp_path):
    table = load_signal_table(signal(tmp_path, *good_rows()), "cifar100")
    assert table.column("cifar100-val") == pytest.approx({A0: 0.3184, A1: 0.578, A2: 0.01})
    assert table.column("cifar100-test")[A1] == pytest.approx(0.5826)
    assert len(table) == 3
    assert table.path == (tmp_path / SIGNAL_TABLE_NAME).resolve()


def test_imagenet_column_prefix(tmp_path):
    table = load_signal_table(signal(tmp_path, *good_rows()), "imagenet")
    assert table.column("imagenet-val")[A2] == pytest.approx(0.0083)


def test_arch_strings_are_normalised(tmp_path):
    path = signal(tmp_path, f'0," {A1} ",1,2,3,4,5,6')
    assert list(load_signal_table(path, "cifar10").column("cifar10-val")) == [A1]


def test_blank_lines_are_skipped(tmp_path):
    rows = good_rows()
    path = signal(tmp_path, rows[0], "", rows[1], ",,,,,,,", rows[2])
    assert len(load_signal_table(path, "cifar10")) == 3


def test_boundary_values_0_and_100_are_accepted(tmp_path):
    path = signal(tmp_path, f"0,{A0},0,100,0,0,0,0")
    table = load_signal_table(path, "cifar10")
    assert table.column("cifar10-val")[A0] == 1.0 and table.column("cifar10-test")[A0] == 0.0


def test_unknown_column_lookup_names_the_column(tmp_path):
    table = load_signal_table(signal(tmp_path, *good_rows()), "cifar10")
    with pytest.raises(TableError) as info:
        table.column("cifar100-val")
    assert "'cifar100-val'" in info.value.message and "cifar10-val" in info.value.message


def test_coverage_note_for_a_partial_table(tmp_path):
    table = load_signal_table(signal(tmp_path, *good_rows()), "cifar10")
    note = coverage_note(table)
    assert note is not None and f"3 of {NUM_CELLS}" in note and str(table.path) in note


# --- malformed tables -------------------------------------------------------------------


def test_missing_file(tmp_path):
    err = load_error(tmp_path / "nope.csv")
    assert "not found" in err.message and "nope.csv" in err.message
    assert "--signal-table" in err.hint


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    err = load_error(tmp_path / "dir.csv")
    assert "not a file" in err.message and "dir.csv" in err.message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    err = load_error(path)
    assert "empty" in err.message and "empty.csv" in err.message and err.hint


def test_non_utf8_file(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"index,arch\n\xff\xfe\x00garbage\n")
    err = load_error(path)
    assert "not a readable CSV" in err.message and "bin.csv" in err.message


def test_missing_column_is_named(tmp_path):
    header = "index,arch,cifar10-test,cifar100-test,cifar100-val"
    path = signal(tmp_path, f"0,{A0},1,2,3", header=header)
    err = load_error(path)
    assert "cifar10-val" in err.message and "lacks column" in err.message
    assert "cifar100-val" in err.message  # what it has
    assert "cifar10-val" in err.hint


def test_missing_arch_column_is_named(tmp_path):
    path = signal(tmp_path, f"0,{A0},1,2", header="index,cell,cifar10-test,cifar10-val")
    err = load_error(path)
    assert "arch" in err.message.split("lacks column(s)")[1].split(";")[0]


def test_wrong_field_count_names_the_line(tmp_path):
    rows = good_rows()
    path = signal(tmp_path, rows[0], f"1,{A1},88.22,82.834", rows[2])
    err = load_error(path)
    assert "line 3" in err.message and "4 fields" in err.message and "8" in err.message


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf"])
def test_non_numeric_value_names_line_column_and_value(tmp_path, value):
    rows = good_rows()
    path = signal(tmp_path, rows[0], rows[1], f"2,{A2},10.0,{value},1,1,1,1")
    err = load_error(path)
    assert "line 4" in err.message and "cifar10-val" in err.message and repr(value) in err.message
    assert "percent" in err.message


@pytest.mark.parametrize("value", ["100.5", "-1", "1e3"])
def test_out_of_range_value_is_rejected(tmp_path, value):
    path = signal(tmp_path, f"0,{A0},{value},50,1,1,1,1")
    err = load_error(path)
    assert "line 2" in err.message and "cifar10-test" in err.message and repr(value) in err.message
    assert "0-100" in err.message and "percent" in err.hint


def test_value_in_a_column_not_loaded_is_not_checked(tmp_path):
    path = signal(tmp_path, f"0,{A0},50,50,oops,500,1,1")
    assert len(load_signal_table(path, "cifar10")) == 1
    assert "line 2" in load_error(path, "cifar100").message


def test_bad_arch_string_names_the_line_and_the_problem(tmp_path):
    rows = good_rows()
    bad = A1.replace("avg_pool_3x3~1", "max_pool~1")
    path = signal(tmp_path, rows[0], rows[1], rows[2], f"3,{bad},1,1,1,1,1,1")
    err = load_error(path)
    assert "line 5" in err.message and "'max_pool'" in err.message
    assert "avg_pool_3x3" in err.hint  # the list of ops


def test_header_without_rows(tmp_path):
    err = load_error(signal(tmp_path))
    assert "header but no rows" in err.message and SIGNAL_TABLE_NAME in err.message


def test_header_with_only_blank_rows(tmp_path):
    err = load_error(signal(tmp_path, "", "  "))
    assert "no rows" in err.message


# --- final table ------------------------------------------------------------------------


def final(tmp_path: Path, header: str, *rows: str) -> Path:
    return write(tmp_path / final_table_name("cifar10"), header, *rows)


def test_final_table_loads_its_single_200ep_column(tmp_path):
    path = final(tmp_path, "index,arch,cifar10_test_200ep,isomorphism_class", f"0,{A0},85.5,x", f"1,{A1},93.66,y")
    table = load_final_table(path)
    assert list(table.columns) == ["cifar10_test_200ep"]
    assert table.column("cifar10_test_200ep") == pytest.approx({A0: 0.855, A1: 0.9366})


def test_final_table_without_200ep_column(tmp_path):
    path = final(tmp_path, "index,arch,cifar10_test", f"0,{A0},85.5")
    with pytest.raises(TableError) as info:
        load_final_table(path)
    msg = info.value.message
    assert "exactly one '*_test_200ep' column" in msg and "cifar10_test" in msg and str(path.name) in msg
    assert "_test_200ep" in info.value.hint


def test_final_table_with_two_200ep_columns(tmp_path):
    path = final(tmp_path, "index,arch,cifar10_test_200ep,cifar100_test_200ep", f"0,{A0},85.5,60")
    with pytest.raises(TableError) as info:
        load_final_table(path)
    assert "exactly one" in info.value.message
    assert "cifar10_test_200ep" in info.value.message and "cifar100_test_200ep" in info.value.message


def test_missing_final_table_points_at_the_final_flag(tmp_path):
    with pytest.raises(TableError) as info:
        load_final_table(tmp_path / "missing.csv")
    assert "final table not found" in info.value.message and "--final-table" in info.value.hint


def test_final_table_values_are_checked(tmp_path):
    path = final(tmp_path, "index,arch,cifar10_test_200ep", f"0,{A0},85.5", f"1,{A1},193.66")
    with pytest.raises(TableError) as info:
        load_final_table(path)
    assert "line 3" in info.value.message and "cifar10_test_200ep" in info.value.message


# --- cache ------------------------------------------------------------------------------


def test_same_file_is_served_from_cache(tmp_path):
    path = signal(tmp_path, *good_rows())
    assert load_signal_table(path, "cifar10") is load_signal_table(path, "cifar10")


def test_rewritten_file_is_read_again(tmp_path):
    path = signal(tmp_path, *good_rows())
    first = load_signal_table(path, "cifar10")
    assert first.column("cifar10-val")[A1] == pytest.approx(0.82834)
    signal(tmp_path, f"0,{A1},50,40,1,1,1,1")
    second = load_signal_table(path, "cifar10")
    assert second is not first
    assert second.column("cifar10-val") == pytest.approx({A1: 0.40})


def test_rewritten_file_of_the_same_size_is_read_again(tmp_path):
    path = signal(tmp_path, f"0,{A1},50,40,1,1,1,1")
    st = path.stat()
    assert load_signal_table(path, "cifar10").column("cifar10-val")[A1] == pytest.approx(0.40)
    signal(tmp_path, f"0,{A1},50,41,1,1,1,1")
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later tick, whatever the clock
    assert load_signal_table(path, "cifar10").column("cifar10-val")[A1] == pytest.approx(0.41)


def test_rewrite_with_same_size_and_mtime_is_read_again(tmp_path):
    path = signal(tmp_path, f"0,{A1},50,40,1,1,1,1")
    st = path.stat()
    assert load_signal_table(path, "cifar10").column("cifar10-val")[A1] == pytest.approx(0.40)
    signal(tmp_path, f"0,{A1},50,41,1,1,1,1")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_signal_table(path, "cifar10").column("cifar10-val")[A1] == pytest.approx(0.41)


def test_a_file_broken_after_loading_raises_on_the_next_load(tmp_path):
    path = signal(tmp_path, *good_rows())
    load_signal_table(path, "cifar10")
    signal(tmp_path, f"0,{A1},50,140,1,1,1,1")
    assert "line 2" in load_error(path).message


def test_a_deleted_file_is_not_served_from_cache(tmp_path):
    path = signal(tmp_path, *good_rows())
    load_signal_table(path, "cifar10")
    path.unlink()
    assert "not found" in load_error(path).message
