"""Fixtures of the evaluator tests."""

from __future__ import annotations

import pytest

from evaluator.data import load_dataset


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's digits, loaded once per test module (as real jobs see them)."""
    return load_dataset("digits", cache_dir=tmp_path_factory.mktemp("cache"))
