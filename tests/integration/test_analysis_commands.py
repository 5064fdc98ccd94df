"""analysis/: the subcommands end to end (files written, text printed, one-line errors), the HTML report,
watch on a growing log, and run dirs written by plain HpBandSter code."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from analysis import load_run
from analysis.__main__ import main
from analysis.report import write_report
from analysis.watch import INCUMBENT_PLOT, WORKERS_PLOT, WatchSettings, refresh, status_line, watch
from tests.support.analysis_runs import write_ours_run, write_plain_hpbandster_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ours_dir(tmp_path: Path) -> Path:
    return write_ours_run(tmp_path / "ours")


@pytest.fixture
def plain_dir(tmp_path: Path) -> Path:
    return write_plain_hpbandster_run(tmp_path / "plain")


@pytest.mark.parametrize(
    ("arguments", "figures", "printed"),
    [
        (["curves"], ["curves.png"], "80 learning curves on budgets 1, 3"),
        (["curves", "--by", "lr", "--bins", "2"], ["curves-by-learning_rate.png"], "20 configs"),
        (["curves", "--by", "opt"], ["curves-by-optimizer.png"], "sgd:"),
        (["budgets"], ["budgets.png"], "1 vs 3 "),
        (["importance"], ["importance.png", "importance-best.png"], "learning_rate"),
        (["workers"], ["workers.png"], "worker-a:1: 39 jobs"),
        (["cost"], ["cost.png"], "parameters^1.00"),
        (["incumbent", "--group-by", "optimizer"], ["incumbents.png"], "bohb: 1 runs"),
    ],
)
def test_subcommands_write_their_figures(
    ours_dir: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    figures: list[str],
    printed: str,
) -> None:
    assert main([arguments[0], str(ours_dir), *arguments[1:]]) == 0
    out = capsys.readouterr().out
    assert printed in out
    for name in figures:
        assert (ours_dir / name).stat().st_size > 0 and str(ours_dir / name) in out


def test_summary_exports_csv_and_json(
    ours_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "summary",
                str(ours_dir),
                "--csv",
                str(tmp_path / "jobs.csv"),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "workers     2, busy" in out and f"wrote {tmp_path / 'jobs.csv'}" in out
    rows = list(csv.DictReader((tmp_path / "jobs.csv").open()))
    assert len(rows) == 80 and {"learning_rate", "optimizer", "momentum", "worker"} <= set(rows[0])
    assert json.loads((tmp_path / "r.json").read_text())["runs"][0]["summary"]["workers"] == 2
    assert main(["summary", str(ours_dir), "--csv", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run,run_optimizer,config_id") and len(list(csv.DictReader(io.StringIO(out)))) == 80


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["curves", "{plain}"], "no result reports validation_error_per_epoch"),
        (["cost", "{plain}"], "no result reports parameter_count"),
        (["curves", "{ours}", "--by", "size"], "no hyperparameter 'size'; this run has: batch_size, dropout"),
        (["curves", "{ours}", "{plain}"], "curves takes one run dir, not 2"),
        (["workers", "{ours}", "-o", "{ours}/w.jpeg"], "cannot tell the figure format"),
        (["report", "{ours}", "-o", "{ours}/r.png"], "use a name ending in .html"),
        (["importance", "{ours}", "--budget", "27"], "0 finite losses on budget 27"),
    ],
)
def test_subcommand_errors_are_one_line_with_exit_2(
    ours_dir: Path, plain_dir: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    places = {"ours": str(ours_dir), "plain": str(plain_dir)}
    assert main([argument.format(**places) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error


def test_plain_hpbandster_run_dir_works_where_it_can(
    plain_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("summary", "incumbent", "budgets", "importance", "workers"):
        assert main([command, str(plain_dir)]) == 0, command
    out = capsys.readouterr().out
    assert "optimizer   unknown" in out and "failures    crashed 1" in out
    assert "results name no worker" in out
    assert main(["report", str(plain_dir)]) == 0
    page = (plain_dir / "report.html").read_text()
    assert (
        "no result reports validation_error_per_epoch" in page and "no result reports parameter_count" in page
    )


def images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_is_one_self_contained_page(ours_dir: Path, tmp_path: Path) -> None:
    second = write_ours_run(tmp_path / "seed1", seed=1)
    runs = {"ours": load_run(ours_dir), "seed1": load_run(second)}
    path = write_report(runs, tmp_path / "report.html", rule="max-budget", by="lr")
    page = path.read_text()
    # Incumbents + the seeds' band, then per run: importance, best configs, curves, curves by lr,
    # model-based vs random, budgets, workers, cost.
    pictures = images(page)
    assert len(pictures) == 2 + 2 * 8 and all(picture.startswith(b"\x89PNG") for picture in pictures)
    assert page.count("<h2>Run ") == 2 and "optimizer</th><td>bohb" in page
    assert 'src="http' not in page and "<script" not in page


def test_watch_follows_a_growing_log(ours_dir: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    lines = (ours_dir / "results.json").read_text().splitlines(keepends=True)
    (live / "configs.json").write_text((ours_dir / "configs.json").read_text())
    (live / "run.json").write_text(json.dumps({"optimizer": "bohb", "finished": None}))
    settings = WatchSettings(live, interval=0.01, once=True)
    assert "waiting for configs.json / results.json" not in refresh(settings)
    (live / "results.json").write_text("".join(lines[:10]) + lines[10][:20])  # the master mid-line
    first = refresh(settings)
    assert "iteration 3 | 10 jobs done (0 not ok), 35 running or queued" in first
    assert (live / INCUMBENT_PLOT).stat().st_size > 0 and (live / WORKERS_PLOT).stat().st_size > 0
    (live / "results.json").write_text("".join(lines))
    second = refresh(settings)
    assert "80 jobs done" in second and "0 running or queued" in second and "2 workers" in second
    assert not list(live.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_watch_loop_stops_when_the_run_finishes(ours_dir: Path) -> None:
    reported: list[str] = []
    stop = threading.Event()
    # run.json of the factory has "finished": one refresh, then the loop ends by itself.
    assert watch(WatchSettings(ours_dir, interval=30.0), reported.append, stop) == 1
    assert "finished" in reported[0] and "best (max-budget)" in reported[0]
    description = json.loads((ours_dir / "run.json").read_text())
    (ours_dir / "run.json").write_text(json.dumps(description | {"finished": None}))
    stop.set()  # an unfinished run: the loop refreshes once, then sees stop
    assert watch(WatchSettings(ours_dir, interval=30.0), reported.append, stop) == 1


def test_status_line_of_an_empty_run(tmp_path: Path) -> None:
    (tmp_path / "configs.json").write_text("")
    line = status_line(load_run(tmp_path), "max-budget", finished=False)
    assert "0 jobs done" in line and "best (max-budget) -" in line


def test_cli_watch_and_budgets_import_no_torch_pyro_or_pyplot(ours_dir: Path) -> None:
    probe = (
        "import sys; from analysis.__main__ import main; "
        "codes = [main(['watch', sys.argv[1], '--once']), main(['budgets', sys.argv[1]])]; "
        "bad = [m for m in ('torch', 'Pyro4', 'hpbandster', 'workers', 'launch', 'matplotlib.pyplot') "
        "if m in sys.modules]; print('BAD', bad, codes)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(ours_dir)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "BAD [] [0, 0]" in completed.stdout, completed.stderr
    assert "| bohb | finished | 80 jobs done" in completed.stdout
