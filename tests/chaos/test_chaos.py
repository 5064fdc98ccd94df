"""The chaos scenarios of issue 5: real BOHB runs on 127.0.0.1 with fault workers (see the package text).

Every scenario ends with :func:`check_run`: one result line per planned job, none twice, the pickle and the
JSON logs agree; and fills its row of the suite's report (faults injected / survived, results lost,
retries). Scenarios that need an interface the service does not have yet fail naming it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import Pyro4
import pytest

from hpo_service import resume
from hpo_service.brackets import planned_jobs
from hpo_service.nameserver import NameserverAddress, write_credentials
from hpo_service.pyro_setup import configure_pyro
from tests.chaos.conftest import ScenarioReport
from tests.chaos.harness import (
    BUDGETS,
    NAMESERVER,
    RUN_ID,
    Chaos,
    check_run,
    find,
    free_port,
    key,
    redispatch_lines,
)
from tests.conftest import ProcessRun, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(240)]


def planned(n_iterations: int) -> int:
    return planned_jobs("bohb", BUDGETS["min_budget"], BUDGETS["max_budget"], BUDGETS["eta"], n_iterations)


def fill(report: ScenarioReport, check: Any) -> None:
    report.results, report.planned, report.lost = len(check.results), check.planned, check.lost
    report.retries = check.retries


@pytest.fixture
def chaos(process_run: ProcessRun, tmp_path: Path) -> Chaos:
    return Chaos(process_run, tmp_path)


def test_worker_sigkill_mid_job(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """1. A worker SIGKILLed mid-job: its job is sent to another worker, the run completes, nothing lost."""
    n_iterations = 4
    master = chaos.master(n_iterations, "--min-workers", "3", "--max-attempts", "3")
    for index in range(3):
        chaos.worker(f"w{index}", 0.15)
    chaos.wait_results(5, timeout=60)
    chaos.add_fault("slow")
    (victim_job,) = chaos.wait_injected("slow", timeout=30)
    chaos_report.injected = 1
    victim = victim_job["worker"]
    chaos.kill(chaos.workers.pop(victim))
    chaos.finish(master, "master")

    check = check_run(chaos.run_dir, planned(n_iterations))
    fill(chaos_report, check)
    (line,) = find(check.results, victim_job["job"], victim_job["budget"])
    info = check.info(line)
    assert line[3] is not None, f"the killed worker's job crashed instead of being retried: {line}"
    assert info["status"] == "ok" and info.get("worker") != victim, line
    assert info.get("attempts", 1) >= 2, f"the retried job's info does not say attempts >= 2: {info}"
    chaos_report.survived = 1
    logged = redispatch_lines(chaos.log("master"))
    assert logged >= 1, "the master logged no 're-dispatching' line"
    assert check.retries == logged, f"attempts in info say {check.retries} retries, the log {logged}"
    assert check.lost == 0
    chaos_report.note(f"job {tuple(victim_job['job'])} killed on {victim}, finished on {info.get('worker')}")


def test_job_that_kills_every_worker(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """1b. A job that kills every worker it is sent to: tried --max-attempts times (two workers lost), then
    recorded as failed (no result, the exception names the attempts); the other workers finish the run."""
    n_iterations = 2
    master = chaos.master(n_iterations, "--min-workers", "4", "--max-attempts", "2")
    for index in range(4):
        chaos.worker(f"w{index}", 0.15)
    chaos.wait_results(3, timeout=60)
    chaos.add_fault("poison")
    chaos.finish(master, "master")

    deaths = chaos.injected("poison")
    chaos_report.injected = len(deaths)
    assert len(deaths) == 2, f"the poison job ran {len(deaths)} time(s), --max-attempts is 2: {deaths}"
    assert len({entry["worker"] for entry in deaths}) == 2, deaths
    check = check_run(chaos.run_dir, planned(n_iterations))
    fill(chaos_report, check)
    (line,) = find(check.results, deaths[0]["job"], deaths[0]["budget"])
    assert line[3] is None and check.crashed == [line], (
        f"expected only the poison job crashed: {check.crashed}"
    )
    assert "2 time(s)" in str(line[4]) and "--max-attempts" in str(line[4]), line[4]
    # Recorded, not lost: the one crashed line is the job given up on purpose.
    chaos_report.lost = check.lost - 1
    chaos_report.retries = redispatch_lines(chaos.log("master"))
    assert chaos_report.retries == 1, chaos.log("master")
    chaos_report.survived = 2
    chaos_report.note(f"job {tuple(line[0])} failed for good: {str(line[4]).splitlines()[0][:90]}")


NO_SURVIVORS = (
    "no results from the surviving workers (they should re-read RUN_DIR/nameserver.json when the "
    "master is resumed)"
)


def test_master_sigkill_resumed_twice(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """2. The master SIGKILLed mid-run and resumed, twice, its workers surviving: every finished result is
    there once, BOHB goes on with its model, the surviving workers serve each resumed master."""
    n_iterations = 5
    master = chaos.master(n_iterations, "--min-workers", "2")
    for index in range(2):
        chaos.worker(f"w{index}", 0.15)
    kept: list[str] = []
    for round_number, name in enumerate(("master", "resume1")):
        chaos.wait_results(len(kept) + 8, timeout=60, why=f"{name}: {NO_SURVIVORS}")
        chaos.kill(master)
        chaos_report.injected += 1
        kept = (chaos.run_dir / "results.json").read_text().splitlines()
        assert len(kept) < planned(n_iterations), "the run ended before the kill; make it longer"
        configs_before = {
            tuple(json.loads(line)[0]) for line in (chaos.run_dir / "configs.json").read_text().splitlines()
        }
        master = chaos.resume("--min-workers", "2", name=f"resume{round_number + 1}")
        assert wait_for(lambda n=f"resume{round_number + 1}": "resuming" in chaos.log(n), timeout=60), (
            chaos.logs()
        )
        chaos_report.survived += 1
    chaos.wait_results(len(kept) + 1, timeout=60, why=f"resume2: {NO_SURVIVORS}")
    chaos.finish(master, "resume2")

    check = check_run(chaos.run_dir, planned(n_iterations))
    fill(chaos_report, check)
    lines = (chaos.run_dir / "results.json").read_text().splitlines()
    assert lines[: len(kept)] == kept, "a result logged before the last kill changed or went missing"
    assert check.lost == 0
    assert {line[0][0] for line in check.results} == set(range(n_iterations))
    # BOHB continued with its model: the last master sampled new configurations, model-based ones among them.
    configs = [json.loads(line) for line in (chaos.run_dir / "configs.json").read_text().splitlines()]
    new = [line for line in configs if tuple(line[0]) not in configs_before]
    assert new, "the last resumed master sampled no configuration"
    model_based = [line for line in new if line[2].get("model_based_pick")]
    assert model_based, f"no model-based pick after the last resume: {[line[2] for line in new]}"
    # The surviving workers did every job after the kills (no new worker was started).
    workers = {check.info(line).get("worker") for line in check.results}
    assert workers <= {"w0", "w1"}, workers
    chaos_report.note(f"{len(new)} configs sampled by resume2, {len(model_based)} model-based")


def test_failing_configurations(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """3. NaN loss, out of memory, an unbuildable config and a worker exception: each recorded as a result
    with its status and reason, and the run goes on."""
    expected = {
        "nan": ("failed", "non-finite loss"),
        "oom": ("failed", "CUDA out of memory"),
        "unbuildable": ("failed", "invalid configuration"),
        "error": ("error", "RuntimeError: simulated worker fault"),
    }
    n_iterations = 2
    master = chaos.master(n_iterations, "--min-workers", "2")
    for index in range(2):
        chaos.worker(f"w{index}", 0.1)
    chaos.wait_results(2, timeout=60)
    for kind in expected:
        chaos.add_fault(kind)
    chaos.finish(master, "master")

    check = check_run(chaos.run_dir, planned(n_iterations))
    fill(chaos_report, check)
    injected = chaos.injected()
    chaos_report.injected = len(injected)
    assert sorted(entry["fault"] for entry in injected) == sorted(expected)
    order = [key(line) for line in check.results]
    for entry in injected:
        (line,) = find(check.results, entry["job"], entry["budget"])
        info = check.info(line)
        status, reason = expected[entry["fault"]]
        assert line[3] is not None and line[3]["loss"] == 1.0, line
        assert info.get("status") == status, (entry["fault"], info)
        assert reason in str(info.get("reason")), (entry["fault"], info)
        assert order.index(key(line)) < len(order) - 1, "no result after the fault: the run did not go on"
        chaos_report.survived += 1
    assert check.lost == 0
    chaos_report.note(", ".join(f"{kind}: {status}" for kind, (status, _) in expected.items()))


def registered_workers(port: int) -> dict[str, str]:
    configure_pyro()
    try:
        with Pyro4.locateNS(host="127.0.0.1", port=port) as nameserver:
            nameserver._pyroTimeout = 2.0
            return dict(nameserver.list(prefix=f"hpbandster.run_{RUN_ID}."))
    except Pyro4.errors.PyroError:
        return {}


def test_nameserver_restart(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """4. The nameserver (its own process) is SIGKILLed mid-run and restarted on the same port: the run
    goes on, the workers and the dispatcher register again, a worker started afterwards gets jobs."""
    port = free_port()
    nameserver_command = [sys.executable, str(NAMESERVER), "--port", str(port)]
    nameserver = chaos.start("nameserver", nameserver_command)
    assert wait_for(lambda: "nameserver ready" in chaos.log("nameserver"), timeout=30), chaos.logs()
    chaos.run_dir.mkdir()
    # The workers read the address from the run dir (the master joins with --nameserver and writes none).
    write_credentials(chaos.run_dir, NameserverAddress("127.0.0.1", port))
    n_iterations = 6
    master = chaos.master(n_iterations, "--min-workers", "2", "--nameserver", f"127.0.0.1:{port}")
    for index in range(2):
        chaos.worker(f"w{index}", 0.3)
    chaos.wait_results(4, timeout=60)
    chaos.kill(nameserver)
    chaos_report.injected = 1
    down = len(chaos.results())
    time.sleep(2.0)
    during = len(chaos.results()) - down
    nameserver = chaos.start("nameserver-restarted", nameserver_command)
    assert wait_for(lambda: "nameserver ready" in chaos.log("nameserver-restarted"), timeout=30), chaos.logs()
    chaos.worker("late", 0.3)

    def names() -> list[str]:
        return sorted(name.rsplit(".", 1)[-1] if ".worker." in name else "dispatcher"
                      for name in registered_workers(port))  # fmt: skip

    everyone = wait_for(lambda: len(names()) >= 4 or master.poll() is not None, timeout=30)
    seen = names()
    chaos.finish(master, "master")
    chaos.kill(nameserver)

    check = check_run(chaos.run_dir, planned(n_iterations))
    fill(chaos_report, check)
    assert check.lost == 0
    late_jobs = [line for line in check.results if check.info(line).get("worker") == "late"]
    assert late_jobs, "the worker started after the restart got no job"
    chaos_report.note(f"{during} results while the nameserver was down; late worker {len(late_jobs)} jobs")
    assert everyone and len(seen) >= 4, (
        f"after the restart the nameserver lists only {seen} (expected the dispatcher and 3 workers; "
        f"workers should re-register with a restarted nameserver)\n{chaos.logs()}"
    )
    chaos_report.survived = 1


def test_late_joining_worker(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """5. A worker started after the master began (and after the first results) gets jobs."""
    n_iterations = 4
    master = chaos.master(n_iterations, "--min-workers", "1")
    chaos.worker("early", 0.3)
    chaos.wait_results(3, timeout=60)
    joined = time.time()
    chaos.worker("late", 0.3)
    chaos_report.injected = 1
    chaos.finish(master, "master")

    check = check_run(chaos.run_dir, planned(n_iterations))
    fill(chaos_report, check)
    late = chaos.jobs_of("late")
    assert late, f"the late worker got no job\n{chaos.logs()}"
    late_results = [line for line in check.results if check.info(line).get("worker") == "late"]
    assert len(late_results) == len(late)
    chaos_report.survived = 1
    assert check.lost == 0
    chaos_report.note(
        f"late worker: first job {late[0]['time'] - joined:.1f} s after its start, {len(late)} of "
        f"{len(check.results)} jobs"
    )


def test_job_timeout(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """6. A job that hangs is stopped at --job-timeout, recorded as timed out, and the run goes on; its
    worker stops the job when asked and takes jobs again."""
    timeout = 2.0
    n_iterations = 4
    master = chaos.master(n_iterations, "--min-workers", "2", "--job-timeout", f"{timeout:g}")
    for index in range(2):
        chaos.worker(f"w{index}", 0.25, "--hang-limit", "30")
    chaos.wait_results(3, timeout=60)
    chaos.add_fault("hang")
    (hung,) = chaos.wait_injected("hang", timeout=30)
    chaos_report.injected = 1
    chaos.finish(master, "master")

    check = check_run(chaos.run_dir, planned(n_iterations))
    fill(chaos_report, check)
    (line,) = find(check.results, hung["job"], hung["budget"])
    info = check.info(line)
    assert line[3] is not None and line[3]["loss"] == 1.0, line
    assert info.get("status") == "timeout" and info.get("reason"), info
    times = line[2]
    ran = times["finished"] - times["started"]
    assert timeout <= ran < timeout + 3, f"recorded after {ran:.1f} s with --job-timeout {timeout:g}"
    assert check.lost == 0
    end = chaos.ended(hung)
    assert end is not None and end.get("cancelled"), (
        f"the hung job was not stopped through the worker's cancel flag (ServiceWorker.cancel_job "
        f"and job_cancelled): {end}"
    )
    later = [entry for entry in chaos.jobs_of(hung["worker"]) if entry["time"] > end["time"]]
    assert later or check.results[-1] is line, "the worker that was asked to stop took no job afterwards"
    chaos_report.survived = 1
    chaos_report.note(f"recorded after {ran:.1f} s, worker stopped after {end['hung_seconds']} s, "
                      f"then {len(later)} jobs")  # fmt: skip


def interrupted_logs_are_valid(chaos: Chaos, kept: list[str]) -> list[str]:
    """After a Ctrl-C: the logs load for --resume without any cut line, and nothing logged before is lost."""
    run = resume.load_run(chaos.run_dir)
    assert not run.cut, f"Ctrl-C left an incomplete line: {run.cut}"
    lines = (
        (chaos.run_dir / "results.json").read_text().splitlines()
        if (chaos.run_dir / "results.json").exists()
        else []
    )
    assert lines[: len(kept)] == kept, "a result logged before the Ctrl-C changed or went missing"
    keys = [key(json.loads(line)) for line in lines]
    assert len(keys) == len(set(keys)), "a job logged twice"
    return lines


def stop_group(
    chaos: Chaos, leader: subprocess.Popen[bytes], members: list[subprocess.Popen[bytes]], name: str
) -> list[int]:
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group; everyone must exit."""
    os.killpg(leader.pid, signal.SIGINT)
    codes = []
    for process in [leader, *members]:
        try:
            codes.append(process.wait(timeout=30))
        except subprocess.TimeoutExpired:
            chaos.dump_stacks(process)
            pytest.fail(f"{name}: process {process.pid} still running 30 s after Ctrl-C\n{chaos.logs()}")
    return codes


def test_ctrl_c_at_random_moments(chaos: Chaos, chaos_report: ScenarioReport) -> None:
    """7. Ctrl-C at random moments: to ``launch.local`` (real training) once, then to master and workers
    (one process group, as a terminal sends it) after random delays; every time the logs stay valid and
    ``--resume`` takes them; resumed to completion, every result is there once."""
    seed = int(os.environ.get("CHAOS_SEED", "5"))
    rng = random.Random(seed)
    n_iterations = 5
    total = planned(n_iterations)
    # Round 0: launch.local with real workers (torch, digits), interrupted after a few results.
    launcher = chaos.start("launch", [
        sys.executable, "-m", "launch.local", "--run-dir", str(chaos.run_dir), "--run-id", RUN_ID,
        "--n-workers", "2", "--min-budget", "1", "--max-budget", "9", "--eta", "3",
        "--n-iterations", str(n_iterations), "--space", str(chaos.space), "--train-limit", "200",
        "--device", "cpu",
    ])  # fmt: skip
    first = rng.randint(1, 3)
    chaos.wait_results(first, timeout=120)
    time.sleep(rng.uniform(0.0, 0.3))
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=60) == 130, chaos.log("launch")
    chaos_report.injected += 1
    kept = interrupted_logs_are_valid(chaos, [])
    chaos_report.survived += 1
    moments = [f"launch.local after {len(kept)} results"]
    # Rounds 1..3: master + fault workers in one process group (a terminal's foreground job), Ctrl-C at a
    # random moment: round 1 during start-up, the others after a random number of new results and a delay.
    codes: list[int] = []
    for round_number in range(1, 4):
        name = f"resume{round_number}"
        master = chaos.resume("--min-workers", "2", name=name, start_new_session=False, process_group=0)
        workers = [
            chaos.start(f"{name}-w{index}", chaos.worker_command(f"w{index}", 0.15), start_new_session=False,
                        process_group=master.pid)
            for index in range(2)
        ]  # fmt: skip
        if round_number == 1:
            time.sleep(rng.uniform(0.2, 2.0))
        else:
            chaos.wait_results(len(kept) + rng.randint(1, 4), timeout=60)
            time.sleep(rng.uniform(0.0, 0.3))
        if master.poll() is not None:
            pytest.fail(f"{name} ended before the Ctrl-C\n{chaos.logs()}")
        moment = time.monotonic()
        round_codes = stop_group(chaos, master, workers, name)
        stopped = time.monotonic() - moment
        chaos_report.injected += 1
        assert round_codes[0] in (130, -signal.SIGINT), (
            f"{name} exited with {round_codes[0]}\n{chaos.log(name)}"
        )
        codes += round_codes
        before = len(kept)
        kept = interrupted_logs_are_valid(chaos, kept)
        chaos_report.survived += 1
        moments.append(f"{name} after {len(kept) - before} new results (all stopped in {stopped:.1f} s)")
    master = chaos.resume("--min-workers", "2", name="final")
    for index in range(2):
        chaos.worker(f"final-w{index}", 0.05)
    chaos.finish(master, "final")

    check = check_run(chaos.run_dir, total)
    fill(chaos_report, check)
    lines = (chaos.run_dir / "results.json").read_text().splitlines()
    assert lines[: len(kept)] == kept
    assert check.lost == 0
    chaos_report.note(
        f"CHAOS_SEED={seed}; Ctrl-C to " + ", ".join(moments) + f"; exit codes {sorted(set(codes))}"
    )
