"""The chaos suite's report: each scenario fills a :class:`ScenarioReport`; the table of all of them is
printed at the end of the pytest run and written to ``BASETEMP/chaos-report.json``."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

REPORTS: list[ScenarioReport] = []


@dataclass
class ScenarioReport:
    scenario: str
    injected: int = 0  # faults injected
    survived: int = 0  # injected faults the run recorded as it should and went on after
    results: int = 0  # result lines at the end
    planned: int = 0
    lost: int | None = None  # planned jobs without a result (must be 0)
    retries: int = 0  # re-dispatches (info["attempts"] - 1 summed; the master's "re-dispatching" lines)
    outcome: str = "?"
    seconds: float = 0.0
    notes: str = ""

    def note(self, text: str) -> None:
        self.notes = f"{self.notes}; {text}" if self.notes else text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.chaos_outcome = report.outcome  # type: ignore[attr-defined]


@pytest.fixture
def chaos_report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScenarioReport]:
    report = ScenarioReport(scenario=request.node.name.removeprefix("test_"))
    started = time.monotonic()
    yield report
    report.seconds = round(time.monotonic() - started, 1)
    report.outcome = getattr(request.node, "chaos_outcome", "error")
    REPORTS.append(report)
    path = Path(tmp_path_factory.getbasetemp()) / "chaos-report.json"
    path.write_text(json.dumps([asdict(item) for item in REPORTS], indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("chaos suite")
    header = f"{'scenario':<28} {'outcome':<7} {'injected':>8} {'survived':>8} {'results':>9} {'lost':>4} "
    write(header + f"{'retries':>7} {'wall s':>6}  notes")
    for report in REPORTS:
        lost = "-" if report.lost is None else str(report.lost)
        results = f"{report.results}/{report.planned}"
        write(
            f"{report.scenario:<28} {report.outcome:<7} {report.injected:>8} {report.survived:>8} "
            f"{results:>9} {lost:>4} {report.retries:>7} {report.seconds:>6.1f}  {report.notes}"
        )
