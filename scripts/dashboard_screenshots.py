"""The docs' dashboard screenshots, from a real browser on a real run (not drawn by hand).

Starts ``python -m analysis serve`` on a parent directory, then a short BOHB search on the digits dataset
with ``launch.local`` (the README's first command: 4 workers, 130 jobs on budgets 1 to 27 epochs) so
the page fills live, waits for the run to end, clicks the row of the best configuration trained on
several budgets and saves, in headless Debian chromium (Playwright):

- ``docs/images/dashboard-jobs.png``: the jobs table with the clicked configuration's curves;
- ``docs/images/dashboard-incumbent-gantt.png``: the incumbent charts and the worker Gantt chart.

    .venv/bin/python scripts/dashboard_screenshots.py [--runs DIR] [--output docs/images]

``--runs DIR`` keeps the run in ``DIR/bohb-digits``; when it is already there, the search is skipped
(re-shooting after a page change).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser.chromium import browser_page, missing_reason  # noqa: E402

# The README's first command (BOHB, 130 jobs on budgets 1 to 27 epochs, 4 workers), seeded.
SEARCH = ("--n-workers", "4", "--seed", "1")


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def start_server(runs: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "analysis", "serve", str(runs), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip().removeprefix("dashboard: ")


def start_search(runs: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "launch.local", *SEARCH, "--run-dir", str(runs / "bohb-digits")]
    return subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, cwd=REPO)


def shown_config(run_dir: Path) -> str:
    """The configuration to click: the best of those trained on several budgets (its curves show how the
    budgets compare), else the incumbent."""
    from analysis.incumbents import find_incumbent
    from analysis.load import load_run

    run = load_run(run_dir, prefer="json")
    budgets: dict[tuple[int, int, int], list[tuple[float, float]]] = {}
    for job in run.jobs:
        if job.loss is not None:
            budgets.setdefault(job.config_id, []).append((job.budget, job.loss))
    several = {config_id: max(runs)[1] for config_id, runs in budgets.items() if len(runs) > 1}
    incumbent = find_incumbent(run)
    assert incumbent is not None, f"{run_dir}: no finite loss"
    chosen = min(several, key=lambda config_id: several[config_id]) if several else incumbent.config_id
    return "_".join(map(str, chosen))


def clip_of(page: Any, first: str, last: str) -> dict[str, float]:
    """The page area from the top of ``first`` to the bottom of ``last``."""
    top, bottom = page.locator(first).bounding_box(), page.locator(last).bounding_box()
    return {"x": 0, "y": top["y"] - 8, "width": page.viewport_size["width"],
            "height": bottom["y"] + bottom["height"] - top["y"] + 16}  # fmt: skip


def shoot(url: str, run_dir: Path, output: Path) -> None:
    rows = sum(1 for _ in (run_dir / "results.json").open())
    with browser_page(width=1400, height=2600) as page:
        page.goto(url)
        page.locator("#job-count", has_text=f"({rows} jobs)").wait_for(timeout=120_000)
        key = shown_config(run_dir)
        page.locator(f'#jobs tbody tr[data-config="{key}"]').first.click()
        page.locator("#curve-title", has_text=key).wait_for(timeout=30_000)
        page.wait_for_timeout(4000)  # charts settle (they redraw at most every 2 s)
        output.mkdir(parents=True, exist_ok=True)
        jobs = output / "dashboard-jobs.png"
        page.screenshot(path=str(jobs), clip=clip_of(page, "#jobs-section", "#curve-section"))
        incumbent = output / "dashboard-incumbent-gantt.png"
        page.screenshot(path=str(incumbent), clip=clip_of(page, "#runs", "#gantt"))
        print(f"wrote {jobs} and {incumbent}")


def wait_for_end(search: subprocess.Popen[bytes] | None, run_dir: Path) -> None:
    if search is not None and search.wait(timeout=900) != 0:
        raise SystemExit(f"the search failed (exit {search.returncode})")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        description = json.loads((run_dir / "run.json").read_text())
        if description.get("finished") is not None:
            return
        time.sleep(1)
    raise SystemExit(f"{run_dir}: run.json never recorded the end")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=Path, help="keep the run here; reuse it when present")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "images")
    options = parser.parse_args()
    if missing_reason() is not None:
        print(f"no browser: {missing_reason()}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dashboard-shots-") as scratch:
        runs = options.runs or Path(scratch) / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        server, url = start_server(runs)
        try:
            run_dir = runs / "bohb-digits"
            search = None if (run_dir / "run.json").is_file() else start_search(runs)
            wait_for_end(search, run_dir)
            shoot(url, run_dir, options.output)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
