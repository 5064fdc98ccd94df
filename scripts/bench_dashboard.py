"""Time the live dashboard (``python -m analysis serve``) on a synthetic run of 10,000 results.

Writes the run dir of ``scripts/bench_analysis.py`` (10,000 results, learning curves, 8 workers), starts
the server in a fresh interpreter and measures, over HTTP on 127.0.0.1:

- first page load: the HTML, scripts (Plotly's 4.8 MB included) and every JSON answer the page asks for
  before its first complete drawing (runs, jobs, charts, compare; importance separately: the page draws it
  last, and it is a random forest);
- live update: the time from appending one line to ``results.json`` to the jobs endpoint returning that
  job (the page asks every ``POLL_MILLISECONDS``, so the page shows it at most that much later);
- idle CPU: the server process's CPU time (user + system, from /proc) over ``--idle-seconds`` of polling
  at the page's rate with nothing new to read, as a share of one core.

With ``--browser`` (default when Debian's chromium and Playwright are installed) the same three numbers
in a real headless Chromium: time to the full table and incumbent chart, time until an appended job shows
in the table, and the server's CPU while the page sits open.

    .venv/bin/python scripts/bench_dashboard.py [--results 10000] [--idle-seconds 20] [--no-browser]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.dashboard.server import POLL_MILLISECONDS  # noqa: E402

STATIC = ("/", "/static/dashboard.css", "/static/dashboard.js", "/static/plotly.min.js")


def load_bench_analysis() -> Any:
    spec = importlib.util.spec_from_file_location("bench_analysis", REPO / "scripts" / "bench_analysis.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Client:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> bytes:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {body[:200]!r}")
        return body

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))


def start_server(run_dir: Path) -> tuple[subprocess.Popen[str], int, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "analysis", "serve", str(run_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
    return process, port, time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_load(client: Client, run_id: str, pid: int) -> tuple[float, float, float, int]:
    """Seconds for the page's first requests, the server's CPU seconds for them, seconds for importance,
    rows received."""
    cpu, started = cpu_seconds(pid), time.perf_counter()
    for path in STATIC:
        client.get(path)
    client.json("/api/config")
    client.json("/api/runs")
    jobs = client.json(f"/api/jobs?run={run_id}&cursor=0")
    client.json(f"/api/charts?run={run_id}")
    client.json("/api/compare")
    loaded, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    started = time.perf_counter()
    client.json(f"/api/importance?run={run_id}")
    return loaded, cpu, time.perf_counter() - started, len(jobs["rows"])


def append_job(run_dir: Path, number: int) -> None:
    """One more finished job of a new configuration, as the master appends it."""
    config_id = [9000 + number, 0, 0]
    config = {"learning_rate": 0.01, "optimizer": "adam", "dropout": 0.1, "batch_size": 64, "kernel_size": 3}
    with open(run_dir / "configs.json", "a") as handle:
        handle.write(json.dumps([config_id, config, {"model_based_pick": True}]) + "\n")
    now = 1e6 + number
    stamps = {"submitted": now, "started": now, "finished": now + 1}
    result = {"loss": 0.5, "info": {"status": "ok", "worker": "bench:0", "epochs_trained": 1}}
    with open(run_dir / "results.json", "a") as handle:
        handle.write(json.dumps([config_id, 1.0, stamps, result, None]) + "\n")
        handle.flush()


def live_update(client: Client, run_dir: Path, run_id: str, repeats: int = 5) -> list[float]:
    latencies = []
    state = client.json(f"/api/jobs?run={run_id}&cursor=0")
    cursor, origin = state["cursor"], state["origin"]
    for number in range(repeats):
        append_job(run_dir, number)
        started = time.perf_counter()
        while True:
            answer = client.json(f"/api/jobs?run={run_id}&cursor={cursor}&origin={origin}")
            if answer["rows"]:
                latencies.append(time.perf_counter() - started)
                cursor = answer["cursor"]
                break
            time.sleep(0.01)
        time.sleep(0.2)
    return latencies


def idle_share(pid: int, seconds: float, poll: Any) -> float:
    """The server's CPU share of one core while ``poll`` runs every POLL_MILLISECONDS."""
    before, started = cpu_seconds(pid), time.perf_counter()
    while time.perf_counter() - started < seconds:
        poll()
        time.sleep(POLL_MILLISECONDS / 1000)
    return (cpu_seconds(pid) - before) / (time.perf_counter() - started)


# Recorded in the page: Playwright's own waits run on the page's main thread, which is busy drawing charts
# for seconds, so they would report when the page was next free rather than when the user saw the table.
PAGE_CLOCK = """
window.__seen = {};
new MutationObserver(() => {
  const count = document.getElementById("job-count");
  const text = count ? count.textContent : "";
  if (text && !(text in window.__seen)) {
    window.__seen[text] = null;
    requestAnimationFrame(() => { window.__seen[text] = performance.timeOrigin + performance.now(); });
  }
  for (const id of ["incumbent-time", "gantt", "parallel"]) {
    const key = `chart:${id}`;
    const drawn = document.querySelector(`#${id} .main-svg .trace, #${id} .parcoords`);
    if (drawn && !(key in window.__seen)) window.__seen[key] = performance.timeOrigin + performance.now();
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def seen_at(page: Any, key: str, timeout: float = 60.0) -> float:
    """The wall-clock time (s) of the first frame in which the page showed ``key``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = page.evaluate(f"window.__seen[{json.dumps(key)}] || null")
        if value is not None:
            return float(value) / 1000
        page.wait_for_timeout(50)
    raise TimeoutError(f"the page never showed {key!r}")


def browser_numbers(port: int, pid: int, run_dir: Path, idle_seconds: float, results: int) -> None:
    from tests.browser.chromium import browser_page, missing_reason

    if missing_reason() is not None:
        print(f"browser: skipped ({missing_reason()})")
        return
    with browser_page() as page:
        page.add_init_script(PAGE_CLOCK)
        started = time.time()
        page.goto(f"http://127.0.0.1:{port}/")
        table = seen_at(page, f"({results + 5} jobs)") - started
        charts = [
            seen_at(page, f"chart:{name}") - started for name in ("incumbent-time", "gantt", "parallel")
        ]
        print(
            f"browser: first load to the full jobs table on screen {table:.2f} s; incumbent, Gantt, "
            f"parallel coordinates drawn at {charts[0]:.2f}, {charts[1]:.2f}, {charts[2]:.2f} s"
        )
        page.wait_for_timeout(3000)
        delays = []
        for number in range(5, 10):
            append_job(run_dir, number)
            started = time.time()
            delays.append(seen_at(page, f"({results + number + 1} jobs)", 30.0) - started)
            # The charts redraw too, then the page is idle again; the jitter keeps the appends from
            # falling at one phase of the page's polling.
            page.wait_for_timeout(2500 + random.uniform(0, POLL_MILLISECONDS))
        print(f"browser: appended job on screen in the table after {format_seconds(delays)}")
        page.wait_for_timeout(25_000)  # importance (drawn at most every 20 s) settles
        share = idle_share(pid, idle_seconds, lambda: None)
        print(f"browser: server CPU with the page open and nothing new: {share:.1%} of one core")


def format_seconds(values: list[float]) -> str:
    return f"median {sorted(values)[len(values) // 2]:.3f} s, max {max(values):.3f} s ({len(values)} lines)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--no-browser", action="store_true", help="HTTP numbers only")
    options = parser.parse_args()
    bench_analysis = load_bench_analysis()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as scratch:
        run_dir = Path(scratch) / "run"
        run_dir.mkdir()
        bench_analysis.write_run(run_dir, options.results)
        process, port, startup = start_server(run_dir)
        try:
            print(f"{options.results} results; server up (URL printed) after {startup:.2f} s")
            print(f"load average before the measurements: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            client = Client(port)
            loaded, cpu, importance, rows = first_load(client, "run", process.pid)
            print(
                f"first page load (HTML, scripts, runs, {rows} job rows, charts, compare): {loaded:.2f} s "
                f"(server CPU for it: {cpu:.2f} s)"
            )
            print(f"importance (random forest, drawn last): {importance:.2f} s")
            latencies = live_update(client, run_dir, "run")
            print(f"live update, append to endpoint answer: {format_seconds(latencies)}")
            share = idle_share(process.pid, options.idle_seconds, lambda: client.json("/api/runs"))
            print(
                f"idle polling (/api/runs every {POLL_MILLISECONDS} ms): server CPU {share:.1%} of one core"
            )
            if not options.no_browser:
                browser_numbers(port, process.pid, run_dir, options.idle_seconds, options.results)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
