# make install  installs archagent with every extra the tests need (test, local: the offline LLM, report, onnx, ray) into the current Python
#               environment (or into ./.venv when that Python is externally managed, PEP 668)
# make demo     installs, then trains a 12-candidate search on scikit-learn's digits with the offline LLM and the
#               proposer portfolio (about 6 min on 2 cores after make install, the model's preparation on first use included)
# make demo-nb201  the same on the NAS-Bench-201 tables (tabular, seconds)
# make test     installs, then runs the linter and the import contracts (make lint), then the whole test
#               suite: in parallel, then the offline-model tests on their own (PYTEST_WORKERS, MARKERS, PYTEST_ARGS)
# make test-fast  the same without the tests marked slow, llm, ray or gpu: for development (under 3 min on 2 cores)
# make lint     ruff (the rule set in pyproject.toml) and the import contracts (lint-imports; docs/architecture.md)
# make bench    reproduces docs/benchmarks.md (hours on 2 cores)

SYS_PYTHON ?= python3
# torch first, pinned: a bare `torch` requirement with no torch installed pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
BENCHDATA ?= ../shared/benchdata
PYTEST_ARGS ?=
# `make test` runs the tests in parallel (pytest-xdist): one worker per core, at most 4 (each worker
# holds its own torch, and many tests train in 2 processes of their own; beyond 4 the longest tests
# bound the time). PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))

PYTHON := $(shell $(SYS_PYTHON) -c "import os, sys, sysconfig; managed = os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')); print('.venv/bin/python' if managed and sys.prefix == sys.base_prefix else sys.executable)")
STAMP := .make/installed

.PHONY: install sandbox-tools demo demo-nb201 lint test test-fast bench clean

install: $(if $(filter .venv/bin/python,$(PYTHON)),.venv/bin/python)
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[test,local,report,onnx,ray]"
	@$(MAKE) --no-print-directory sandbox-tools
	@mkdir -p .make && touch $(STAMP)

# bubblewrap isolates candidate code (network, file system, processes): installed with apt-get when
# run as root, otherwise `make` says what to install. Without it code mode needs --unsafe.
sandbox-tools:
	@if command -v bwrap >/dev/null 2>&1; then \
	  echo "bubblewrap: $$(bwrap --version)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing bubblewrap (apt-get) for the sandbox"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null; } \
	  || echo "could not install bubblewrap with apt-get: code mode will need --unsafe (agent doctor shows the sandbox layers)"; \
	else \
	  echo "NOTE: the sandbox for code-mode candidates uses bubblewrap, which is not installed."; \
	  echo "      Install it (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)."; \
	  echo "      Until then code mode refuses to run without --unsafe; 'agent doctor' shows the sandbox layers."; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory install

.venv/bin/python:
	$(SYS_PYTHON) -m venv .venv

demo: $(STAMP)
	$(PYTHON) -m agent search --task digits --llm local

demo-nb201: $(STAMP)
	@if [ ! -f "$(BENCHDATA)/nb201/nb201_12epoch_accuracy.csv" ]; then \
	  echo "make demo-nb201 needs the NAS-Bench-201 tables in $(BENCHDATA)/nb201 (nb201_12epoch_accuracy.csv)."; \
	  echo "Get them as docs/training.md ('NAS-Bench-201 tables') says, then run: make demo-nb201 BENCHDATA=/path/to/benchdata"; \
	  exit 1; fi
	$(PYTHON) -m agent search --task nb201-cifar10 --benchmark-dir "$(BENCHDATA)/nb201" --proposer evolution --budget 100 --seed 0

# Two passes. First every test but the offline-model ones, in parallel: --dist loadgroup hands tests
# out one at a time to whichever worker is free (tests/conftest.py puts the slow ones first), except
# that a group (xdist_group: the Ray tests) runs on one worker. Then the offline-model tests (marker
# llm), in one process with every core: beside training jobs and Ray on 2 cores the model answered
# about 5x slower (its six tests took over 30 min in the parallel pass, 5 min on their own).
# Exit status 5 is pytest's "no test selected" (a PYTEST_ARGS -k that picks none of a pass).
# MARKERS narrows both passes (make test MARKERS="not slow"); PYTEST_ARGS adds options to both.
MARKERS ?=
and_markers = $(if $(strip $(MARKERS)), and ($(MARKERS)))
test: lint
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not llm$(and_markers)" $(PYTEST_ARGS) || [ $$? = 5 ]
	$(PYTHON) -m pytest -m "llm$(and_markers)" $(PYTEST_ARGS) || [ $$? = 5 ]

FAST_MARKERS := not slow and not llm and not ray and not gpu
test-fast: lint
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

# The import contracts are in pyproject.toml ([tool.importlinter]); lint-imports runs through the
# interpreter that has them installed, wherever its scripts folder is.
lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache

bench: $(STAMP)
	for t in nb201-cifar10 nb201-cifar100 nb201-imagenet16; do \
	    $(PYTHON) bench/search_nb201.py --task $$t --benchmark-dir "$(BENCHDATA)/nb201" || exit 1; done
	for t in nb201-cifar10 nb201-cifar100 nb201-imagenet16; do \
	    $(PYTHON) bench/nb201_proxy_table.py --task $$t --benchmark-dir "$(BENCHDATA)/nb201" || exit 1; done
	$(PYTHON) bench/search_nb201.py --task nb201-cifar10 --benchmark-dir "$(BENCHDATA)/nb201" --budgets 10 30 50 100 \
	    --proposers evolution random portfolio-nollm no-proxies default prior --json /tmp/archagent-bench-surrogate.json
	for t in nb201-cifar100 nb201-imagenet16; do \
	    $(PYTHON) bench/search_nb201.py --task $$t --benchmark-dir "$(BENCHDATA)/nb201" --budgets 50 \
	        --proposers no-proxies default prior || exit 1; done
	$(PYTHON) bench/search_nb201.py --benchmark-dir "$(BENCHDATA)/nb201" --budgets 10 30 --proposers portfolio
	$(PYTHON) bench/search_nb201.py --benchmark-dir "$(BENCHDATA)/nb201" --budgets 50 --proposers portfolio
	$(PYTHON) bench/search_nb201.py --benchmark-dir "$(BENCHDATA)/nb201" --budgets 100 --proposers portfolio
	$(PYTHON) bench/portfolio_standins.py --benchmark-dir "$(BENCHDATA)/nb201"
	$(PYTHON) bench/portfolio_standins.py --benchmark-dir "$(BENCHDATA)/nb201" --guided --seeds 25 --budgets 30 50
	$(PYTHON) bench/layers_table.py
	$(PYTHON) bench/digits_proposers.py
	$(PYTHON) bench/surrogate_quality.py --benchmark-dir "$(BENCHDATA)/nb201"
	$(PYTHON) bench/surrogate_overhead.py --benchmark-dir "$(BENCHDATA)/nb201"
	$(PYTHON) bench/search_speed.py --benchmark-dir "$(BENCHDATA)/nb201"
	$(PYTHON) bench/search_digits.py
	$(PYTHON) bench/early_stop_digits.py
	$(PYTHON) bench/early_stopping.py
	$(PYTHON) bench/proxies.py
	$(PYTHON) bench/latency.py
	$(PYTHON) bench/train_throughput.py
	$(PYTHON) bench/sandbox_overhead.py
	$(PYTHON) bench/snapshots.py
	$(PYTHON) bench/history_load.py --candidates 100000
	$(PYTHON) bench/history_soak.py --benchmark-dir "$(BENCHDATA)/nb201" --candidates 100000 --minutes 30
	$(PYTHON) bench/chaos.py --cycles 100

clean:
	rm -rf .make build *.egg-info .pytest_cache .ruff_cache .import_linter_cache
