"""The Python API mirrors the CLI and returns the same objects."""

from __future__ import annotations

import pkgutil

import pytest

import agent
from evaluator.errors import SpecError
from tests.conftest import all_archs


def test_api_names_are_not_shadowed_by_subpackages():
    """`import agent.x` sets attribute x on the package; it must never replace an API function."""
    subpackages = {m.name for m in pkgutil.iter_modules(agent.__path__)}
    assert not subpackages & set(agent.__all__)


@pytest.mark.slow
def test_search_history_show_evaluate(tiny_tables, tmp_path):
    home = tmp_path / "home"
    first = agent.search("nb201-cifar10", benchmark_dir=tiny_tables, budget=6, seed=1, home=home)
    again = agent.search("nb201-cifar10", benchmark_dir=tiny_tables, budget=6, seed=1, home=home)
    assert first.best.arch == again.best.arch and first.run_id != again.run_id
    assert first.to_json()["best"]["candidate_id"] == first.best.candidate_id

    runs = agent.history(home=home)["runs"]
    assert [r["run_id"] for r in runs] == [first.run_id, again.run_id]
    detail = agent.history(first.run_id, home=home)
    assert len(detail["candidates"]) == 6 and detail["summary"]["run_id"] == first.run_id
    shown = agent.show(first.best.candidate_id, home=home)
    assert shown["arch"] == first.best.arch and shown["status"] == "ok"

    res = agent.evaluate("nb201-cifar10", all_archs()[7], benchmark_dir=tiny_tables, home=home)
    assert res["status"] == "ok" and "test_accuracy" not in res  # no test read without final=True
    assert agent.evaluate("nb201-cifar10", all_archs()[7], benchmark_dir=tiny_tables, home=home, final=True)["test_accuracy"] > 0
    with pytest.raises(SpecError, match="unknown op 'conv'"):
        agent.evaluate("nb201-cifar10", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", benchmark_dir=tiny_tables, home=home)
    assert len(agent.history(home=home)["runs"]) == 4  # the bad spec recorded nothing
