"""The dashboard in a real browser (headless Debian chromium via Playwright) on a live search with fast
fake workers: the jobs table grows to the planned count without a reload, a clicked row shows that
configuration's curves, the incumbent chart has the trajectory's points, the console stays clean, and
HTML in a configuration value or a run dir name shows as text."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from analysis.dashboard.plan import planned_jobs
from analysis.incumbents import incumbent_trajectory
from analysis.load import load_run
from tests.browser.chromium import browser_page, missing_reason
from tests.browser.curve_worker import fake_curve
from tests.conftest import REPO, ProcessRun, master_command, result_lines, wait_for
from tests.support.dashboard_runs import HOSTILE_NAME, HOSTILE_VALUE, write_hostile_run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.timeout(400),
    pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason())),
]

WORKERS = 2
# Seconds per fake job: long enough that the page sees the table part-filled, short enough for CI.
JOB_SECONDS = 1.0


def start_dashboard(process_run: ProcessRun, *paths: Path) -> str:
    """Start ``python -m analysis serve`` on a free port; its URL (the first line it prints)."""
    command = [sys.executable, "-m", "analysis", "serve", *map(str, paths), "--port", "0"]
    process_run.start("dashboard", command)

    def first_line() -> str:
        lines = process_run.log("dashboard").splitlines()
        return lines[0] if lines and lines[0].endswith("/") else ""

    assert wait_for(lambda: bool(first_line()), timeout=60), process_run.log("dashboard")
    line = first_line()
    assert line.startswith("dashboard: http://127.0.0.1:"), line
    return line.removeprefix("dashboard: ")


def start_search(process_run: ProcessRun, run_dir: Path) -> None:
    run_id = "browser"
    process_run.start(
        "master",
        master_command(
            run_dir, run_id, "--optimizer", "bohb", "--min-budget", "1", "--max-budget", "9",
            "--n-iterations", "3", "--min-workers", str(WORKERS), "--ping-interval", "1",
        ),
    )  # fmt: skip
    worker = str(REPO / "tests" / "browser" / "curve_worker.py")
    for index in range(WORKERS):
        arguments = ["--run-id", run_id, "--run-dir", str(run_dir), "--sleep", str(JOB_SECONDS)]
        process_run.start(f"worker{index}", [sys.executable, worker, *arguments, "--name", f"fake-{index}"])


def watch_console(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return problems


def plot_traces(page: Any, element: str) -> list[dict[str, Any]]:
    """The traces Plotly drew in ``element`` (Plotly keeps them on the div as ``data``)."""
    return page.evaluate(
        "(id) => (document.getElementById(id).data || []).map("
        "t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])}))",
        element,
    )


def wait_until(check: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll ``check`` (from Python: the page's own scripts keep running) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_live_search_in_a_real_browser(process_run: ProcessRun, tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    run_dir = parent / "live"
    url = start_dashboard(process_run, parent)
    with browser_page() as page:
        problems = watch_console(page)
        navigations: list[str] = []

        def navigated(frame: Any) -> None:
            if frame == page.main_frame:
                navigations.append(frame.url)

        page.on("framenavigated", navigated)
        page.goto(url)
        page.locator("#status", has_text="0 run(s)").wait_for(timeout=60_000)
        start_search(process_run, run_dir)  # the run starts after the page: it must appear by itself

        rows = page.locator("#jobs tbody tr")
        assert wait_until((run_dir / "run.json").is_file, 60)
        planned = planned_jobs(load_run(run_dir, prefer="json").metadata)
        assert planned == 20
        seen = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (not seen or seen[-1] < planned):
            seen.append(rows.count())
            time.sleep(0.3)
        assert seen[-1] == planned, (seen, process_run.log("master"))
        assert any(0 < count < planned for count in seen), f"never saw the table part-filled: {seen}"
        assert len(navigations) == 1, navigations  # no reload
        assert page.locator("#runs tbody tr").first.locator("td").nth(3).text_content() == f"{planned} / 20"

        run = load_run(run_dir, prefer="json")
        check_clicked_curve(page, run_dir)
        check_incumbent_chart(page, run)
    assert problems == []


def check_clicked_curve(page: Any, run_dir: Path) -> None:
    """Click the row of a configuration that ran on several budgets: its curves per budget appear."""
    results = result_lines(run_dir)
    budgets: dict[tuple[int, ...], list[float]] = {}
    for config_id, budget, *_ in results:
        budgets.setdefault(tuple(config_id), []).append(budget)
    chosen = max(budgets, key=lambda config_id: len(budgets[config_id]))
    key = "_".join(map(str, chosen))
    lines = (run_dir / "configs.json").read_text().splitlines()
    configs = {tuple(line[0]): line[1] for line in map(json.loads, lines)}
    page.locator(f'#jobs tbody tr[data-config="{key}"]').first.click()
    page.locator("#curve-title", has_text=key).wait_for(timeout=30_000)

    def losses_drawn() -> list[dict[str, Any]]:
        return [trace for trace in plot_traces(page, "curves") if trace["name"] == "loss per budget"]

    traces = wait_until(losses_drawn, 30)
    assert sorted(traces[0]["x"]) == sorted(budgets[chosen])
    by_name = {trace["name"]: trace for trace in plot_traces(page, "curves")}
    for budget in budgets[chosen]:
        curve = by_name[f"budget {budget:g}"]
        assert curve["y"] == pytest.approx(fake_curve(configs[chosen], budget), rel=1e-5)
    assert "learning_rate" in (page.locator("#curve-config").text_content() or "")


def check_incumbent_chart(page: Any, run: Any) -> None:
    """The incumbent chart's points are the run's incumbent trajectory (HpBandSter's rule)."""
    expected = incumbent_trajectory(run, "max-budget")
    assert len(expected) > 0

    def drawn() -> dict[str, Any] | None:
        points = [t for t in plot_traces(page, "incumbent-time") if t["name"] == "incumbents"]
        return points[0] if points and len(points[0]["y"]) == len(expected) else None

    points = wait_until(drawn, 60)  # charts redraw at most every 10 s on a slow machine
    assert points is not None, plot_traces(page, "incumbent-time")
    assert points["y"] == pytest.approx(list(expected.losses), rel=1e-6)
    assert points["x"] == pytest.approx(list(expected.times), abs=1e-3)


def test_html_in_a_run_shows_as_text(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = write_hostile_run(tmp_path / HOSTILE_NAME)
    url = start_dashboard(process_run, run_dir)
    with browser_page() as page:
        problems = watch_console(page)
        page.goto(url)
        page.locator("#jobs tbody tr").nth(2).wait_for(timeout=60_000)
        assert page.locator("#runs tbody td").first.text_content() == HOSTILE_NAME
        cells = page.locator("#jobs tbody td").all_text_contents()
        assert cells.count(HOSTILE_VALUE) == 3
        page.locator("#jobs tbody tr").first.click()
        page.locator("#curve-config", has_text=HOSTILE_VALUE).wait_for(timeout=30_000)
        # Nothing became markup: no element from the run's text, only the page's own two scripts.
        assert page.locator("script").count() == 2
        assert page.locator("main img, section img, section b, #runs b, #jobs b").count() == 0
        page.wait_for_timeout(1500)  # a poll or two later, still nothing ran
    assert problems == []
