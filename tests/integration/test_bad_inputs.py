"""Bad input (issue 5): every CLI answers each case of ``scripts/bad_inputs.py`` with exit code 2 and one
clear line (after argparse's usage, where argparse answers), and leaves the files it was given unchanged."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# ~100 subprocesses, each importing its CLI: one to three minutes on 2 busy cores, all in the first test's
# setup (the module fixture), hence a timeout above the suite's 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bad_inputs.py"


def load_survey() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bad_inputs_survey", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


survey = load_survey()


@pytest.fixture(scope="module")
def outcomes() -> dict[int, Any]:
    """Every case run once (two at a time), by index."""
    return dict(enumerate(survey.run_cases(survey.CASES, jobs=2)))


def test_there_are_enough_cases() -> None:
    assert len(survey.CASES) >= 30
    clis = {case.cli for case in survey.CASES}
    assert {"hpo_service", "workers", "launch.local", "analysis"} <= clis


@pytest.mark.parametrize(
    "index", range(len(survey.CASES)), ids=[f"{c.cli}:{c.situation}" for c in survey.CASES]
)
def test_bad_input_is_refused_with_one_clear_line(outcomes: dict[int, Any], index: int) -> None:
    outcome = outcomes[index]
    case = survey.CASES[index]
    assert outcome.code == 2, outcome.stderr
    assert case.expect.lower() in outcome.message.lower(), outcome.stderr
    assert "Traceback" not in outcome.stderr
    if case.watch:
        assert outcome.untouched, f"{case.watch} changed"
    assert survey.good(outcome), outcome.stderr
