"""Checks of a finished run directory that more than one test makes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from hpbandster.core.result import logged_results_to_HBS_result


def check_complete(run_dir: Path, planned: int, kept: list[str]) -> list[list[Any]]:
    lines = (run_dir / "results.json").read_text().splitlines()
    # Everything logged before a kill is still there, unchanged, at the start of the file.
    assert lines[: len(kept)] == kept
    results = [json.loads(line) for line in lines]
    keys = [(tuple(line[0]), line[1]) for line in results]
    assert len(keys) == len(set(keys)), "a (config, budget) result is logged twice"
    assert len(results) == planned
    assert all(line[3] is not None and line[3]["info"]["status"] == "ok" for line in results)
    config_ids = [tuple(json.loads(line)[0]) for line in (run_dir / "configs.json").read_text().splitlines()]
    assert len(config_ids) == len(set(config_ids))
    with open(run_dir / "results.pkl", "rb") as handle:
        pickled = pickle.load(handle)
    runs = pickled.get_all_runs()
    assert sorted((tuple(run.config_id), run.budget) for run in runs) == sorted(keys)
    assert len(logged_results_to_HBS_result(str(run_dir)).get_all_runs()) == planned
    assert json.loads((run_dir / "run.json").read_text())["finished"] is not None
    return results
