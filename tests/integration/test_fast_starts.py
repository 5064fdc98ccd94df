"""Fast starts (issue 14, item 6): ``--help`` of every command line and the container healthcheck load
none of the heavy libraries (seconds each on a small machine), checked in ``sys.modules`` of a fresh
interpreter rather than by wall time; and the light name lists agree with the registries they stand for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("hpbandster", "torch", "matplotlib", "sklearn", "ConfigSpace", "scipy", "statsmodels")
PROBE = """
import json, os, runpy, sys
module, arguments = sys.argv[1], sys.argv[2:]
sys.argv = [module, *arguments]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(os.environ["HEAVY"])))
print("HEAVY=" + json.dumps(heavy))
"""


def loaded_heavy_modules(
    module: str, *arguments: str, environment: dict[str, str] | None = None
) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, module, *arguments], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HEAVY": json.dumps(HEAVY),
             **(environment or {})},
    )  # fmt: skip
    line = next(line for line in completed.stdout.splitlines() if line.startswith("HEAVY="))
    return list(json.loads(line.removeprefix("HEAVY=")))


@pytest.mark.parametrize("module", ["hpo_service", "workers", "launch.local", "analysis", "launch.slurm"])
def test_help_loads_no_heavy_library(module: str) -> None:
    assert loaded_heavy_modules(module, "--help") == []


def test_the_container_healthcheck_loads_no_heavy_library() -> None:
    # Nothing listens on port 9: the check answers "unhealthy", which is enough to see what it loaded.
    environment = {"HPO_INSECURE": "true", "HPO_NAMESERVER": "127.0.0.1:9", "HPO_RUN_ID": "fast"}
    assert loaded_heavy_modules("launch.container", "health", "master", environment=environment) == []


def test_the_light_name_lists_match_the_registries() -> None:
    from hpo_service.hpbandster.optimizers import OPTIMIZERS
    from hpo_service.names import OPTIMIZER_NAMES, SPACE_NAMES
    from hpo_service.presets import PRESETS

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES
    assert tuple(PRESETS) == SPACE_NAMES
