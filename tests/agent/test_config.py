"""Configuration: flags > environment > ./agent.toml > $AGENT_HOME/agent.toml > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import FIELDS, Settings, load_settings
from evaluator.errors import ConfigError


@pytest.fixture
def cwd(tmp_path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def home(tmp_path) -> Path:
    d = tmp_path / "home"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch):
    """The developer's own AGENT_* variables must not leak into tests that read os.environ."""
    import os

    for key in list(os.environ):
        if key.startswith("AGENT_"):
            monkeypatch.delenv(key)


def toml(folder: Path, text: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    return info.value


# --- defaults and precedence ------------------------------------------------------------


def test_defaults(cwd):
    r = load_settings({}, env={}, cwd=cwd)
    s = r.settings
    assert s.home == cwd / "runs"
    assert s.benchmark_dir is None and s.signal_table is None and s.final_table is None
    assert s.proposer is None and s.proposer_name() == "portfolio" and s.surrogate == "on" and s.priors == [] and s.budget is None and s.seed == 0
    assert s.model_copy(update={"llm": "local"}).proposer_name() == "portfolio"  # the default with an LLM
    assert s.reflect_every == 10 and s.directions == [] and s.max_llm_cost is None
    assert s.population == 20 and s.tournament == 5 and s.lock_timeout == 60.0
    assert r.sources == {k: "default" for k in FIELDS}


def test_precedence_flag_env_cwd_toml_home_toml_default(cwd, home):
    home_file = toml(home, "budget = 1\nseed = 1\nminutes = 1.0\npopulation = 11\n")
    cwd_file = toml(cwd, "budget = 2\nseed = 2\nminutes = 2.0\n")
    env = {"AGENT_HOME": str(home), "AGENT_BUDGET": "3", "AGENT_SEED": "3"}
    r = load_settings({"budget": 4}, env=env, cwd=cwd)
    s = r.settings
    assert (s.budget, s.seed, s.minutes, s.population, s.tournament) == (4, 3, 2.0, 11, 5)
    assert r.sources["budget"] == "flag"
    assert r.sources["seed"] == "env AGENT_SEED"
    assert r.sources["minutes"] == f"agent.toml ({cwd_file})"
    assert r.sources["population"] == f"agent.toml ({home_file})"
    assert r.sources["tournament"] == "default"
    assert r.sources["home"] == "env AGENT_HOME"


@pytest.mark.parametrize("layers, expected, source", [
    ({"flag", "env", "cwd", "home"}, 4, "flag"),
    ({"env", "cwd", "home"}, 3, "env AGENT_BUDGET"),
    ({"cwd", "home"}, 2, "cwd"),
    ({"home"}, 1, "home"),
    (set(), None, "default"),
])
def test_each_layer_wins_over_the_ones_below(cwd, home, layers, expected, source):
    home_file = toml(home, "budget = 1\n") if "home" in layers else None
    cwd_file = toml(cwd, "budget = 2\n") if "cwd" in layers else None
    env = {"AGENT_HOME": str(home)}
    if "env" in layers:
        env["AGENT_BUDGET"] = "3"
    r = load_settings({"budget": 4} if "flag" in layers else {}, env=env, cwd=cwd)
    assert r.settings.budget == expected
    labels = {"cwd": f"agent.toml ({cwd_file})", "home": f"agent.toml ({home_file})"}
    assert r.sources["budget"] == labels.get(source, source)


def test_flags_set_to_none_are_unset(cwd):
    toml(cwd, "budget = 9\n")
    r = load_settings({"budget": None, "seed": None}, env={}, cwd=cwd)
    assert r.settings.budget == 9 and r.sources["seed"] == "default"


def test_environment_strings_are_converted(cwd):
    env = {"AGENT_BUDGET": "12", "AGENT_MINUTES": "1.5", "AGENT_PROPOSER": "random", "AGENT_TASK": "nb201-cifar100",
           "AGENT_LOCK_TIMEOUT": "2.5"}
    s = load_settings({}, env=env, cwd=cwd).settings
    assert s.budget == 12 and s.minutes == 1.5 and s.proposer == "random" and s.task == "nb201-cifar100"
    assert s.lock_timeout == 2.5


def test_empty_environment_variable_is_ignored(cwd):
    r = load_settings({}, env={"AGENT_BUDGET": ""}, cwd=cwd)
    assert r.settings.budget is None and r.sources["budget"] == "default"


def test_unknown_environment_variables_are_ignored(cwd):
    r = load_settings({}, env={"AGENT_BUDGETT": "x", "AGENT_COLOR": "1", "BUDGET": "3"}, cwd=cwd)
    assert r.settings.budget is None


def test_reads_os_environ_and_cwd_by_default(cwd, monkeypatch):
    toml(cwd, "population = 7\n")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("AGENT_SEED", "5")
    r = load_settings({})
    assert r.settings.seed == 5 and r.sources["seed"] == "env AGENT_SEED"
    assert r.settings.population == 7
    assert r.settings.home == cwd / "runs"


def test_home_toml_found_in_default_home(cwd):
    runs = cwd / "runs"
    runs.mkdir()
    path = toml(runs, "seed = 8\n")
    r = load_settings({}, env={}, cwd=cwd)
    assert r.settings.seed == 8 and r.sources["seed"] == f"agent.toml ({path})"


def test_home_set_in_cwd_toml_locates_the_second_file(cwd):
    (cwd / "myhome").mkdir()
    toml(cwd, 'home = "myhome"\n')
    toml(cwd / "myhome", "seed = 4\n")
    r = load_settings({}, env={}, cwd=cwd)
    assert r.settings.home == cwd / "myhome" and r.settings.seed == 4


def test_home_flag_locates_the_second_file(cwd, home):
    toml(home, "seed = 6\n")
    r = load_settings({"home": str(home)}, env={"AGENT_HOME": str(cwd / "elsewhere")}, cwd=cwd)
    assert r.settings.home == home and r.settings.seed == 6 and r.sources["home"] == "flag"


def test_cwd_as_home_reads_its_file_once(cwd):
    path = toml(cwd, 'home = "."\nseed = 3\n')
    r = load_settings({}, env={}, cwd=cwd)
    assert r.settings.seed == 3 and r.sources["seed"] == f"agent.toml ({path})"


def test_home_inside_homes_own_toml_is_rejected(cwd, home):
    path = toml(home, 'home = "/somewhere"\n')
    err = config_error({}, env={"AGENT_HOME": str(home)}, cwd=cwd)
    assert str(path) in err.message and "'home'" in err.message
    assert "--home" in err.hint or "AGENT_HOME" in err.hint


def test_home_with_tilde_finds_its_toml(cwd, tmp_path, monkeypatch):
    user_home = tmp_path / "user"
    (user_home / "h").mkdir(parents=True)
    toml(user_home / "h", "budget = 7\n")
    monkeypatch.setenv("HOME", str(user_home))
    r = load_settings({}, env={"AGENT_HOME": "~/h"}, cwd=cwd)
    assert r.settings.home == user_home / "h"  # this part works
    assert r.settings.budget == 7


# --- paths ------------------------------------------------------------------------------


def test_relative_paths_in_a_toml_are_relative_to_that_toml(cwd, home):
    toml(cwd, 'benchmark_dir = "data/nb201"\n')
    toml(home, 'signal_table = "tables/sig.csv"\nfinal_table = "/abs/final.csv"\n')
    s = load_settings({}, env={"AGENT_HOME": str(home)}, cwd=cwd).settings
    assert s.benchmark_dir == cwd / "data" / "nb201"
    assert s.signal_table == home / "tables" / "sig.csv"
    assert s.final_table == Path("/abs/final.csv")


def test_relative_paths_in_home_toml_found_via_relative_home(cwd):
    (cwd / "h").mkdir()
    toml(cwd / "h", 'benchmark_dir = "bench"\n')
    s = load_settings({}, env={"AGENT_HOME": "h"}, cwd=cwd).settings
    assert s.home == cwd / "h" and s.benchmark_dir == cwd / "h" / "bench"


def test_relative_paths_from_flags_and_env_are_relative_to_cwd(cwd):
    s = load_settings({"benchmark_dir": "b", "signal_table": Path("s.csv")}, env={"AGENT_FINAL_TABLE": "f.csv"},
                      cwd=cwd).settings
    assert s.benchmark_dir == cwd / "b" and s.signal_table == cwd / "s.csv" and s.final_table == cwd / "f.csv"


def test_tilde_in_a_toml_path_is_expanded(cwd, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    toml(cwd, 'benchmark_dir = "~/nb201"\n')
    assert load_settings({}, env={}, cwd=cwd).settings.benchmark_dir == tmp_path / "user" / "nb201"


# --- errors -----------------------------------------------------------------------------


def test_unknown_key_in_toml_suggests_and_names_the_file(cwd):
    path = toml(cwd, "budgett = 5\n")
    err = config_error({}, env={}, cwd=cwd)
    assert str(path) in err.message and "'budgett'" in err.message
    assert "did you mean 'budget'" in err.message
    assert "benchmark_dir" in err.hint and "budget" in err.hint
    assert err.exit_code == 2


def test_unknown_key_in_home_toml_names_that_file(cwd, home):
    path = toml(home, "benchmark-dir = 'x'\n")
    err = config_error({}, env={"AGENT_HOME": str(home)}, cwd=cwd)
    assert str(path) in err.message and "did you mean 'benchmark_dir'" in err.message


def test_toml_sections_are_unknown_keys(cwd):
    toml(cwd, "[search]\nbudget = 5\n")
    err = config_error({}, env={}, cwd=cwd)
    assert "'search'" in err.message


def test_unknown_flag_is_rejected(cwd):
    err = config_error({"popluation": 5}, env={}, cwd=cwd)
    assert "arguments" in err.message and "'popluation'" in err.message
    assert "did you mean 'population'" in err.message


@pytest.mark.parametrize("line, key, shown", [
    ('budget = "ten"', "budget", "'ten'"),
    ("budget = 0", "budget", "0"),
    ("budget = -3", "budget", "-3"),
    ('proposer = "genetic"', "proposer", "'genetic'"),
    ("population = 1", "population", "1"),
    ("tournament = 0", "tournament", "0"),
    ("minutes = 0", "minutes", "0"),
    ("seed = -1", "seed", "-1"),
    ("lock_timeout = 0", "lock_timeout", "0"),
    ("benchmark_dir = 5", "benchmark_dir", "5"),
    ("seed = 1.5", "seed", "1.5"),
])
def test_bad_value_in_toml_names_key_value_and_file(cwd, line, key, shown):
    path = toml(cwd, line + "\n")
    err = config_error({}, env={}, cwd=cwd)
    assert str(path) in err.message and f"for {key}" in err.message and shown in err.message
    assert key in err.hint


def test_non_string_home_in_toml_is_a_config_error(cwd):
    path = toml(cwd, "home = 5\n")
    err = config_error({}, env={}, cwd=cwd)
    assert str(path) in err.message and "home" in err.message


def test_boolean_for_an_integer_setting_is_rejected(cwd):
    toml(cwd, "budget = true\n")
    err = config_error({}, env={}, cwd=cwd)
    assert "budget" in err.message


def test_bad_proposer_error_lists_the_choices(cwd):
    toml(cwd, 'proposer = "genetic"\n')
    err = config_error({}, env={}, cwd=cwd)
    assert "'random'" in err.message and "'evolution'" in err.message


def test_bad_value_in_environment_names_the_variable(cwd):
    err = config_error({}, env={"AGENT_BUDGET": "ten"}, cwd=cwd)
    assert "env AGENT_BUDGET" in err.message and "'ten'" in err.message and "budget" in err.message


def test_bad_flag_value_names_the_flag_source(cwd):
    err = config_error({"budget": 0}, env={}, cwd=cwd)
    assert err.message.startswith("flag:") and "budget" in err.message


def test_bad_value_in_a_lower_layer_is_an_error_even_when_overridden(cwd):
    # a broken file is reported rather than silently shadowed
    path = toml(cwd, 'budget = "ten"\n')
    err = config_error({"budget": 5}, env={}, cwd=cwd)
    assert str(path) in err.message


def test_invalid_toml_names_the_file(cwd):
    path = toml(cwd, "budget = = 5\n")
    err = config_error({}, env={}, cwd=cwd)
    assert str(path) in err.message and "not valid TOML" in err.message and err.hint


def test_non_utf8_toml_is_a_config_error(cwd):
    (cwd / "agent.toml").write_bytes(b"task = '\xff\xfe'\n")
    err = config_error({}, env={}, cwd=cwd)
    assert "not valid TOML" in err.message


def test_settings_model_forbids_unknown_fields():
    with pytest.raises(Exception):
        Settings.model_validate({"nope": 1})


def test_the_documented_agent_toml_example_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "agent.toml").write_text(block)
    resolved = load_settings({}, env={}, cwd=tmp_path)
    assert resolved.settings.llm == "openai" and resolved.sources["llm"].startswith("agent.toml")


def test_directions_come_from_a_list_in_the_file_or_the_environment(cwd):
    (cwd / "agent.toml").write_text('directions = ["prefer 3x3 convolutions", "no pooling"]\n')
    assert load_settings({}, env={}, cwd=cwd).settings.directions == ["prefer 3x3 convolutions", "no pooling"]
    assert load_settings({}, env={"AGENT_DIRECTIONS": "keep it small"}, cwd=cwd).settings.directions == ["keep it small"]
    assert load_settings({}, env={"AGENT_DIRECTIONS": '["a", "b"]'}, cwd=cwd).settings.directions == ["a", "b"]
    with pytest.raises(ConfigError, match="AGENT_DIRECTIONS") as info:
        load_settings({}, env={"AGENT_DIRECTIONS": '["a", '}, cwd=cwd)
    assert "JSON list" in info.value.hint


def test_list_settings_come_comma_separated_or_as_json_and_bad_items_are_named(cwd):
    env = {"AGENT_OBJECTIVES": "accuracy, latency", "AGENT_RUNGS": "[2, 5]", "AGENT_PROXIES": "synflow,snip",
           "AGENT_EARLY_STOP": "asha", "AGENT_MAX_LATENCY_MS": "1.5"}
    s = load_settings({}, env=env, cwd=cwd).settings
    assert s.objectives == ["accuracy", "latency"] and s.rungs == [2, 5] and s.proxies == ["synflow", "snip"]
    assert s.early_stop == "asha" and s.max_latency_ms == 1.5 and s.reduction_factor == 3
    defaults = load_settings({}, env={}, cwd=cwd).settings
    assert defaults.objectives is None and defaults.rungs is None and len(defaults.proxies) == 5
    assert defaults.screen is None and defaults.max_params is None
    with pytest.raises(ConfigError, match="AGENT_OBJECTIVES.*'speed'"):
        load_settings({}, env={"AGENT_OBJECTIVES": "accuracy,speed"}, cwd=cwd)
    with pytest.raises(ConfigError, match="AGENT_RUNGS: not a JSON list"):
        load_settings({}, env={"AGENT_RUNGS": "[2,"}, cwd=cwd)
    (cwd / "agent.toml").write_text('objectives = ["accuracy", "params"]\nproxies = []\nscreen = "synflow"\n')
    s = load_settings({}, env={}, cwd=cwd).settings
    assert s.objectives == ["accuracy", "params"] and s.proxies == [] and s.screen == "synflow"
