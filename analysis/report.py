"""One self-contained HTML page per set of runs: settings, summary, and every analysis with its figure
embedded as a base64 PNG (the page needs no other file and no network).

An analysis that cannot be done for a run (no learning curves in a plain HpBandSter run, too few results
for a surrogate) becomes a one-line note in its section; the rest of the page is still written.
"""

from __future__ import annotations

import base64
import html
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from analysis.budgets import budget_correlations, format_correlations
from analysis.cost import format_cost, training_cost
from analysis.curves import curves_by_parameter, learning_curves
from analysis.data import RunData
from analysis.groups import group_trajectories
from analysis.importance import best_configurations, format_importance, parameter_importance
from analysis.incumbents import incumbent_trajectory
from analysis.provenance import model_provenance
from analysis.space import Parameter, UnknownParameterError, resolve_parameter, run_parameters
from analysis.summary import format_duration, format_summary, summarize
from analysis.timeline import worker_timeline

logger = logging.getLogger(__name__)

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1, h2, h3 { font-weight: 600; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; } .note { color: #a60; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; }
"""


class Page:
    """The page's HTML, built in order; figures are drawn into a scratch folder and inlined."""

    def __init__(self, scratch: Path) -> None:
        self.parts: list[str] = []
        self.scratch = scratch
        self.count = 0

    def heading(self, level: int, text: str) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def table(self, rows: Mapping[str, object]) -> None:
        cells = "".join(
            f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
            for key, value in rows.items()
        )
        self.parts.append(f"<table>{cells}</table>")

    def figure(self, draw: Callable[[Path], Path]) -> None:
        self.count += 1
        path = draw(self.scratch / f"figure-{self.count}.png")
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        self.parts.append(f'<img src="data:image/png;base64,{encoded}" alt="figure {self.count}">')

    def section(self, title: str, body: Callable[[], None]) -> None:
        """A section whose analysis may not apply to the run: then a note says why."""
        self.heading(3, title)
        try:
            body()
        except ValueError as error:
            logger.info("%s: %s", title, error)
            self.note(str(error))


def write_report(runs: Mapping[str, RunData], path: Path, *, rule: str, by: str | None = None) -> Path:
    """Write the report on ``runs`` (label -> run) to ``path``. ``by`` names the hyperparameter of the
    curves-by-parameter figure (default: the most important one, else the learning rate)."""
    from analysis.plot_runs import plot_group_trajectories
    from analysis.plots import plot_incumbents

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hpo-report-") as scratch:
        page = Page(Path(scratch))
        page.heading(1, "Hyperparameter optimisation report: " + ", ".join(runs))
        page.heading(2, "Incumbents")
        trajectories = {label: incumbent_trajectory(run, rule) for label, run in runs.items()}
        # Test errors only where the workers reported them (plain HpBandSter workers do not).
        with_test = any(
            loss is not None for trajectory in trajectories.values() for loss in trajectory.test_losses
        )
        page.figure(lambda target: plot_incumbents(trajectories, target, with_test=with_test))
        optimizers = [run.optimizer for run in runs.values()]
        # Bands only say more than the lines when some optimizer has several runs (seeds).
        if len(set(optimizers)) < len(optimizers):
            bands = group_trajectories(runs, rule)
            page.figure(lambda target: plot_group_trajectories(bands, target, rule=rule))
        for label, run in runs.items():
            run_sections(page, label, run, rule, by)
        body = "\n".join(page.parts)
    elapsed = time.perf_counter() - started
    footer = f"<p><small>written {time.strftime('%Y-%m-%d %H:%M:%S')} in {elapsed:.1f} s</small></p>"
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>HPO report</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n{footer}</body></html>\n"
    )
    Path(path).write_text(document, encoding="utf-8")
    return Path(path)


def run_sections(page: Page, label: str, run: RunData, rule: str, by: str | None) -> None:
    from analysis.plot_importance import plot_importance, plot_parallel_coordinates
    from analysis.plot_provenance import plot_model_vs_random
    from analysis.plot_resources import plot_cost, plot_workers
    from analysis.plot_runs import plot_budget_correlations, plot_curves_by_parameter, plot_learning_curves

    page.heading(2, f"Run {label}")
    settings = {key: value for key, value in asdict(run.metadata).items() if value is not None}
    page.table({"run dir": run.run_dir, "read from": run.source, **settings})
    page.text(format_summary(summarize(run)))
    parameters = run_parameters(run)
    important: list[str] = []

    def importance() -> None:
        result = parameter_importance(run, parameters=parameters)
        important.extend(result.names)
        page.text(format_importance(result))
        page.figure(lambda target: plot_importance(run, result, parameters, target))
        samples, best = best_configurations(run, parameters=parameters)
        page.figure(lambda target: plot_parallel_coordinates(samples, best, parameters, target))

    def curves() -> None:
        curves = learning_curves(run)
        page.figure(lambda target: plot_learning_curves(curves, target))
        parameter = pick_parameter(by, important, parameters)
        data = curves_by_parameter(run, parameter)
        page.figure(lambda target: plot_curves_by_parameter(data, target))

    def budgets() -> None:
        correlations = budget_correlations(run)
        page.text(format_correlations(correlations))
        if len(correlations.budgets) > 1:
            page.figure(lambda target: plot_budget_correlations(correlations, target))

    def workers() -> None:
        timeline = worker_timeline(run)
        page.table(
            {
                usage.worker: f"{usage.jobs} jobs, busy {usage.busy_share:.0%}, idle "
                f"{format_duration(usage.idle_seconds)}"
                for usage in timeline.usage
            }
        )
        page.figure(lambda target: plot_workers(timeline, target))

    def provenance() -> None:
        # The counts and the table are in the summary above; a run without the flag gets a note.
        result = model_provenance(run)
        page.figure(lambda target: plot_model_vs_random(result, target))

    def cost() -> None:
        result = training_cost(run)
        page.text(format_cost(result))
        page.figure(lambda target: plot_cost(result, target))

    page.section("Model-based against random configurations", provenance)
    page.section("Which hyperparameters matter", importance)
    page.section("Learning curves", curves)
    page.section("Budgets: rank correlation", budgets)
    page.section("Workers", workers)
    page.section("Training cost", cost)


def pick_parameter(by: str | None, important: list[str], parameters: Sequence[Parameter]) -> Parameter:
    """The parameter named by ``by``, else the most important one, else ``learning_rate``, else the
    first."""
    if by is not None:
        return resolve_parameter(by, parameters)
    for name in [*important, "learning_rate"]:
        try:
            return resolve_parameter(name, parameters)
        except UnknownParameterError:
            continue
    if not parameters:
        raise ValueError("the run's configurations have no hyperparameters")
    return parameters[0]
