"""The dashboard server without a browser: incremental reading, access to run dirs, escaping, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from analysis.dashboard.follow import LineFollower, RunFollower
from analysis.load import parse_result_line
from tests.conftest import ANALYSIS_MAY_IMPORT, REPO
from tests.support.analysis_runs import write_ours_run
from tests.support.dashboard_runs import (
    HOSTILE_NAME,
    HOSTILE_VALUE,
    get_json,
    request,
    result_line,
    served,
    write_hostile_run,
)


def test_follower_reads_only_what_was_appended_and_waits_for_a_line_to_end(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(result_line(0, 0.5) + result_line(1, 0.4))
    follower = LineFollower(path, parse_result_line)
    assert follower.refresh()
    assert len(follower.records) == 2
    assert not follower.refresh()  # nothing new: nothing read
    offset = follower.offset
    third = result_line(2, 0.3)
    with open(path, "a") as handle:
        handle.write(third[:20])  # the writer is in the middle of a line
    assert not follower.refresh()
    assert len(follower.records) == 2 and follower.offset == offset + 20
    with open(path, "a") as handle:
        handle.write(third[20:])
    assert follower.refresh()
    assert [record.config_id for record in follower.records] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    assert follower.offset == path.stat().st_size


def test_follower_starts_over_when_the_file_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(result_line(0, 0.5) + result_line(1, 0.4))
    follower = LineFollower(path, parse_result_line)
    follower.refresh()
    path.write_text(result_line(5, 0.2))
    assert follower.refresh()
    assert [record.config_id for record in follower.records] == [(0, 0, 5)]


def test_run_version_changes_only_with_new_data(tmp_path: Path) -> None:
    run_dir = write_ours_run(tmp_path / "run", count=5)
    follower = RunFollower(run_dir)
    first = follower.refresh()
    assert follower.refresh() == first
    with open(run_dir / "results.json", "a") as handle:
        handle.write(result_line(50, 0.01, config_id=(0, 0, 1)))
    assert follower.refresh() == first + 1
    assert len(follower.snapshot()[1].jobs) == 11


def test_jobs_endpoint_sends_only_rows_after_the_cursor(tmp_path: Path) -> None:
    run_dir = write_ours_run(tmp_path / "run", count=5)
    with served([run_dir]) as server:
        first = get_json(server, "/api/jobs?run=run&cursor=0")
        assert first["reset"] and len(first["rows"]) == 10 and first["cursor"] == 10
        origin = first["origin"]
        again = get_json(server, f"/api/jobs?run=run&cursor=10&origin={origin}")
        assert again["rows"] == [] and again["version"] == first["version"]
        with open(run_dir / "results.json", "a") as handle:
            handle.write(result_line(500, 0.01, budget=3.0, config_id=(0, 0, 2)))
        new = get_json(server, f"/api/jobs?run=run&cursor=10&origin={origin}")
    assert not new["reset"] and new["cursor"] == 11 and new["version"] > first["version"]
    assert [(row["index"], row["config_id"], row["loss"]) for row in new["rows"]] == [(10, "0_0_2", 0.01)]


def test_runs_started_inside_a_named_parent_appear(tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    with served([parent]) as server:
        assert get_json(server, "/api/runs")["runs"] == []
        write_ours_run(parent / "late", count=3)
        time.sleep(1.2)  # the registry lists the parent again at most once a second
        runs = get_json(server, "/api/runs")["runs"]
    assert [(run["id"], run["jobs"], run["state"]) for run in runs] == [("runs/late", 6, "finished")]


def test_unlisted_run_dirs_and_dot_dot_paths_are_refused(tmp_path: Path) -> None:
    served_run = write_ours_run(tmp_path / "served" / "run", count=3)
    secret = write_ours_run(tmp_path / "secret", count=3)
    (tmp_path / "served" / "link").symlink_to(secret)  # a link out of the named parent
    with served([served_run.parent]) as server:
        ids = [run["id"] for run in get_json(server, "/api/runs")["runs"]]
        assert ids == ["served/run"]
        for path in (
            "/api/jobs?run=secret",
            "/api/jobs?run=../secret",
            "/api/jobs?run=served/../secret",
            "/api/jobs?run=served/link",
            f"/api/jobs?run={secret}",
            "/api/charts?run=..%2Fsecret",
            "/static/../../secret/results.json",
            "/../secret/results.json",
            "/api/curves?run=served/run&config=../../etc",
        ):
            status, _, body = request(server, path)
            assert status == 404, (path, body)
            assert b"loss" not in body
        assert request(server, "/api/runs", method="POST")[0] == 405
        assert request(server, "/api/runs", method="DELETE")[0] == 405
        assert request(server, "/api/runs", host="attacker.example:80")[0] == 403


def test_html_in_configs_and_run_names_reaches_the_page_only_as_json_text(tmp_path: Path) -> None:
    run_dir = write_hostile_run(tmp_path / HOSTILE_NAME)
    with served([run_dir]) as server:
        status, headers, page = request(server, "/")
        runs = get_json(server, "/api/runs")["runs"]
        _, json_headers, body = request(server, f"/api/jobs?run={quote(run_dir.name)}")
    assert status == 200
    # The page itself holds no run data (it is static) and allows no inline script.
    assert HOSTILE_VALUE.encode() not in page and b"onerror" not in page
    policy = headers["Content-Security-Policy"]
    scripts = policy.split("script-src")[1].split(";")[0]
    assert "'self'" in scripts and "'unsafe-inline'" not in scripts
    assert json_headers["Content-Type"] == "application/json"
    assert json_headers["X-Content-Type-Options"] == "nosniff"
    assert runs[0]["id"] == HOSTILE_NAME
    rows = json.loads(body)["rows"]
    assert {row["config"]["activation"] for row in rows} == {HOSTILE_VALUE}


def test_a_nan_in_a_configuration_is_sent_as_null(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "configs.json").write_text('[[0, 0, 0], {"learning_rate": NaN}, {}]\n')
    (run_dir / "results.json").write_text(result_line(0, 0.5))
    with served([run_dir]) as server:
        rows = get_json(server, "/api/jobs?run=run")["rows"]
    assert rows[0]["config"] == {"learning_rate": None}


def test_every_chart_endpoint_answers_for_a_real_shaped_run(tmp_path: Path) -> None:
    run_dir = write_ours_run(tmp_path / "run", count=20)
    with served([run_dir]) as server:
        charts = get_json(server, "/api/charts?run=run&rule=any-budget")
        curves = get_json(server, "/api/curves?run=run&config=0_0_3")
        importance = get_json(server, "/api/importance?run=run")
        compare = get_json(server, "/api/compare")
        assert request(server, "/api/charts?run=run&rule=nosuch")[0] == 400
    assert charts["incumbent"]["rule"] == "any-budget" and charts["incumbent"]["losses"]
    assert sorted(charts["gantt"]["workers"]) == ["worker-a:1", "worker-b:2"]
    assert charts["budgets"]["budgets"] == [1.0, 3.0]
    assert len(charts["parallel"]["losses"]) == 20
    assert [job["budget"] for job in curves["jobs"]] == [1.0, 3.0]
    assert len(curves["jobs"][1]["errors"]) == 3
    assert [name for name in importance["names"] if name != "budget"][0] == "learning_rate"
    assert compare["bands"][0]["optimizer"] == "bohb"


def serve_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "analysis", "serve", *arguments]


def test_cli_prints_its_url_first_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    run_dir = write_ours_run(tmp_path / "run", count=3)
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        serve_command(str(run_dir), "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("dashboard: http://127.0.0.1:") and line.endswith("/\n")
        port = int(line.rsplit(":", 1)[1].rstrip("/\n"))
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_refuses_a_port_in_use_with_one_line(tmp_path: Path) -> None:
    run_dir = write_ours_run(tmp_path / "run", count=3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            serve_command(str(run_dir), "--port", str(port)),
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m analysis serve: error: cannot listen on 127.0.0.1 port {port}: the port is in use"
    ]


def test_a_job_submitted_before_all_others_resets_the_page_to_the_new_time_origin(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(result_line(10, 0.5) + result_line(11, 0.4))
    with served([run_dir]) as server:
        first = get_json(server, "/api/jobs?run=run")
        assert [row["started"] for row in first["rows"]] == [0.0, 1.0]
        with open(run_dir / "results.json", "a") as handle:
            handle.write(result_line(4, 0.3, config_id=(0, 0, 4)))  # submitted 6 s before the others
        update = get_json(server, f"/api/jobs?run=run&cursor=2&origin={first['origin']}")
    assert update["reset"] and update["origin"] == first["origin"] - 6
    assert [(row["index"], row["started"]) for row in update["rows"]] == [(0, 6.0), (1, 7.0), (2, 0.0)]


def test_serving_every_endpoint_imports_no_torch_pyro_or_pyplot(tmp_path: Path) -> None:
    run_dir = write_ours_run(tmp_path / "run", count=12)
    probe = (
        "import sys; from pathlib import Path; from tests.support.dashboard_runs import served, get_json\n"
        "with served([Path(sys.argv[1])]) as server:\n"
        "    for path in ('/api/runs', '/api/jobs?run=run', '/api/charts?run=run', '/api/compare',\n"
        "                 '/api/curves?run=run&config=0_0_1', '/api/importance?run=run'):\n"
        "        get_json(server, path)\n"
        "bad = [m for m in ('torch', 'Pyro4', 'hpbandster', 'ConfigSpace', 'workers', 'launch',\n"
        "                   'matplotlib.pyplot') if m in sys.modules]\n"
        "# of hpo_service, analysis may use only its standard-library modules\n"
        f"allowed = {ANALYSIS_MAY_IMPORT!r}\n"
        "bad += [m for m in sys.modules if m.startswith('hpo_service.') and m not in allowed]\n"
        "print('BAD', bad)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(run_dir)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert "BAD []" in completed.stdout, completed.stderr


def test_a_run_dir_that_is_only_starting_is_served_once_its_logs_appear(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)  # as launch.local leaves it before the master's first line
    (run_dir / "nameserver.json").write_text("{}")
    for name in ("progress.json", "sweep.json", "space-from-sweep.json"):  # a study's master, starting
        (run_dir / name).write_text("{}")
    with served([run_dir]) as server:
        assert get_json(server, "/api/runs")["runs"] == []
        (run_dir / "results.json").write_text(result_line(0, 0.5))
        time.sleep(1.2)  # the registry looks again at most once a second
        runs = get_json(server, "/api/runs")["runs"]
    assert [(run["id"], run["jobs"]) for run in runs] == [("run", 1)]
