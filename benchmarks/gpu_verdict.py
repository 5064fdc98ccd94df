"""Issue 13's device checks, read from what ``benchmarks/gpu_check.sh`` left in its output folder.

    python3 benchmarks/gpu_verdict.py OUT           # a line per check: PASS, FAIL or NOT MEASURED
    python3 benchmarks/gpu_verdict.py OUT --best-k  # only the workers per GPU that the packing table favours

Reads ``OUT/gpu-tests.xml`` (pytest's JUnit report of the ``gpu`` tests), ``OUT/gpu-throughput.json``
(:mod:`benchmarks.gpu_throughput`) and the reference search's run dir ``OUT/reference-search`` (and
``OUT/reference-search-kK``, the same search with K workers per GPU, where gpu_check.sh ran it). Every figure
printed is one this run measured; the bars are the issue's. A check whose file is missing (a stage that
timed out, a CPU dry run) says NOT MEASURED rather than passing. Exit status 0 when every check passed.
Needs no torch: it also runs on the development machine over the files the device tool brought back.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analysis import load_run, summarize  # noqa: E402
from analysis.cost import overheads  # noqa: E402
from analysis.data import RunData  # noqa: E402
from analysis.load import RunDirError  # noqa: E402

# The bars ("Done when" 1, 2, 3 and 6), all set on this GPU.
BARS_DEVICE = "H200"
GRAPH_RATIO_BAR = 0.8
RATIO_BATCHES = (21, 128)
SEARCH_JOBS = 20
SEARCH_WALL_BAR = 25.0
AGGREGATE_BAR = 500_000.0
LATER_OVERHEAD_BAR = 0.3
FIRST_OVERHEAD_BAR = 1.0
# K within this share of the best aggregate counts as as good: fewer processes use less memory and cores.
PACKING_TOLERANCE = 0.95

PASS, FAIL, UNMEASURED = "PASS", "FAIL", "NOT MEASURED"
Check = tuple[str, str, str]  # (name, verdict, what was measured)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="gpu_check.sh's output folder")
    parser.add_argument("--best-k", action="store_true", help="print only the favoured workers per GPU")
    arguments = parser.parse_args(argv)
    throughput = read_json(arguments.out / "gpu-throughput.json")
    if arguments.best_k:
        best = best_packing(throughput.get("packing", []))
        print(best if best is not None else "")
        return 0 if best is not None else 1
    checks = verdict(arguments.out, throughput)
    width = max(len(name) for name, _, _ in checks)
    for name, result, measured in checks:
        print(f"{result:<12} {name:<{width}}  {measured}")
    for line in notes(arguments.out, throughput):
        print(line)
    return 0 if all(result == PASS for _, result, _ in checks) else 1


def verdict(out: Path, throughput: Mapping[str, Any]) -> list[Check]:
    search = read_run(out / "reference-search")
    checks = [device_check(throughput.get("device"))]
    checks += [step_check(throughput.get("steps", []), batch) for batch in RATIO_BATCHES]
    checks.append(search_check("reference search, default workers", search))
    checks.append(aggregate_check(throughput.get("packing", []), search))
    checks.append(tests_check(out / "gpu-tests.xml"))
    checks += result_checks(search)
    for packed in sorted(out.glob("reference-search-k*")):
        checks.append(search_check(f"reference search, {packed.name.rsplit('-', 1)[1]}", read_run(packed)))
    return checks


def device_check(device: str | None) -> Check:
    """The device tool may lend an H100 as well: its figures say nothing about bars set on the H200."""
    name = f"measured on an {BARS_DEVICE}, the GPU the bars are for"
    if not device:
        return name, UNMEASURED, "no device in the benchmark's output"
    return name, PASS if BARS_DEVICE in device else FAIL, device


def step_check(rows: list[dict[str, Any]], batch: int) -> Check:
    name = f"trainer-graph / hand-graph at batch {batch} >= {GRAPH_RATIO_BAR}x"
    rates = {row["pipeline"]: row["images_per_second"] for row in rows if row.get("batch") == batch}
    if not rates.get("hand-graph") or "trainer-graph" not in rates:
        return name, UNMEASURED, "no graph rows in the steps table"
    ratio = rates["trainer-graph"] / rates["hand-graph"]
    measured = f"{ratio:.2f}x ({rates['trainer-graph']:,.0f} vs {rates['hand-graph']:,.0f} images/s)"
    return name, PASS if ratio >= GRAPH_RATIO_BAR else FAIL, measured


def search_check(name: str, run: RunData | None) -> Check:
    name = f"{name}: {SEARCH_JOBS} jobs, wall <= {SEARCH_WALL_BAR:g} s"
    if run is None:
        return name, UNMEASURED, "no run dir"
    summary = summarize(run)
    failures = ", ".join(f"{count} {status}" for status, count in summary.failures) or "no failures"
    measured = (
        f"{summary.n_jobs} jobs, {failures}, wall {summary.wall_time:.1f} s, {summary.workers} worker(s)"
    )
    passed = summary.n_jobs == SEARCH_JOBS and not summary.failures and summary.wall_time <= SEARCH_WALL_BAR
    return name, PASS if passed else FAIL, measured


def aggregate_check(rows: list[dict[str, Any]], search: RunData | None) -> Check:
    name = f"aggregate images/s at the default workers per GPU >= {AGGREGATE_BAR:,.0f}"
    if search is None or not rows:
        return name, UNMEASURED, "no packing table or no reference search (which says the default)"
    workers = summarize(search).workers
    row = next((row for row in rows if row["processes"] == workers), None)
    if row is None:
        return name, UNMEASURED, f"the packing table has no row for {workers} process(es)"
    rate = row["aggregate_images_per_second"]
    modes = f", step mode {row['step_modes']}" if row.get("step_modes") else ""
    return name, PASS if rate >= AGGREGATE_BAR else FAIL, f"{rate:,.0f} with {workers} process(es){modes}"


def tests_check(report: Path) -> Check:
    name = "every gpu test ran and passed"
    if not report.is_file():
        return name, UNMEASURED, "no JUnit report"
    suites = ElementTree.parse(report).getroot().iter("testsuite")
    counts = {key: 0 for key in ("tests", "failures", "errors", "skipped")}
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    measured = ", ".join(f"{value} {key}" for key, value in counts.items())
    if counts["tests"] == 0 or counts["skipped"] == counts["tests"]:
        return name, UNMEASURED, measured
    passed = counts["failures"] == counts["errors"] == counts["skipped"] == 0
    return name, PASS if passed else FAIL, measured


def result_checks(run: RunData | None) -> list[Check]:
    carried = "results carry step mode, precision and peak GPU memory"
    overhead = (
        f"wall minus training <= {LATER_OVERHEAD_BAR:g} s per job, <= {FIRST_OVERHEAD_BAR:g} s first jobs"
    )
    if run is None or not run.jobs:
        return [(carried, UNMEASURED, "no results"), (overhead, UNMEASURED, "no results")]
    lacking = [
        job.config_id
        for job in run.jobs
        if not all(job.info.get(key) is not None for key in ("step_mode", "precision", "peak_gpu_memory"))
    ]
    modes = sorted({f"{job.info.get('precision')}/{job.info.get('step_mode')}" for job in run.jobs})
    checks = [(carried, FAIL if lacking else PASS, f"{len(lacking)} job(s) lacking; seen {', '.join(modes)}")]
    groups = overheads(run)
    if not groups:
        return [*checks, (overhead, UNMEASURED, "no job reports its training time")]
    first = max(group.first_job_max_seconds for group in groups)
    later = max((group.later_max_seconds or 0.0) for group in groups)
    median = max(group.median_seconds for group in groups)
    passed = first <= FIRST_OVERHEAD_BAR and later <= LATER_OVERHEAD_BAR
    measured = f"other jobs at most {later:.2f} s (median {median:.2f} s), first jobs at most {first:.2f} s"
    return [*checks, (overhead, PASS if passed else FAIL, measured)]


def best_packing(rows: list[dict[str, Any]]) -> int | None:
    """The fewest processes per GPU whose aggregate is within :data:`PACKING_TOLERANCE` of the best."""
    if not rows:
        return None
    best = max(row["aggregate_images_per_second"] for row in rows)
    good = [
        row["processes"] for row in rows if row["aggregate_images_per_second"] >= PACKING_TOLERANCE * best
    ]
    return int(min(good))


def notes(out: Path, throughput: Mapping[str, Any]) -> list[str]:
    """What the tables say about the defaults still to choose: K (and MPS, or threads per process),
    precision, cuDNN's autotuner."""
    lines = []
    best = best_packing(throughput.get("packing", []))
    if best is not None:
        lines.append(
            f"note: packing favours {best} worker(s) per GPU "
            f"(the fewest within {PACKING_TOLERANCE:.0%} of the best aggregate)"
        )
    by_pipeline = {
        (row["pipeline"], row["batch"]): row["images_per_second"] for row in throughput.get("steps", [])
    }
    for (pipeline, batch), rate in sorted(by_pipeline.items(), key=lambda item: item[0][1]):
        contiguous = by_pipeline.get(("hand-graph", batch))
        if pipeline == "hand-graph-channels-last" and contiguous:
            lines.append(
                f"note: at batch {batch} the hand graph does {rate:,.0f} images/s channels-last, "
                f"{contiguous:,.0f} contiguous ({rate / contiguous:.2f}x; the trainer runs conv models "
                "channels-last)"
            )
    with_mps = read_json(out / "gpu-throughput-mps.json").get("packing", [])
    without = {row["processes"]: row["aggregate_images_per_second"] for row in throughput.get("packing", [])}
    for row in with_mps:
        count, rate = row["processes"], row["aggregate_images_per_second"]
        plain = "" if without.get(count) is None else f" (without MPS: {without[count]:,.0f})"
        lines.append(f"note: {count} process(es) under MPS: {rate:,.0f} images/s{plain}")
    lines += stream_notes(throughput)
    fastest: dict[tuple[str, str], tuple[float, str]] = {}
    for row in throughput.get("precision", []):
        rate = max(row["eager_images_per_second"], row["graph_images_per_second"])
        key = (row["network"], row["images"])
        fastest[key] = max(fastest.get(key, (0.0, "")), (rate, row["precision"]))
    for (network, images), (rate, precision) in sorted(fastest.items()):
        lines.append(f"note: fastest precision for {network} on {images}: {precision} ({rate:,.0f} images/s)")
    autotune = {
        row["cudnn_benchmark"]: row["training"] + row["overhead"] for row in throughput.get("autotune", [])
    }
    if {"on", "off"} <= set(autotune):
        better = "on" if autotune["on"] < autotune["off"] else "off"
        lines.append(
            f"note: cudnn.benchmark {better} is faster over a search's first jobs "
            f"(on {autotune['on']:.2f} s, off {autotune['off']:.2f} s of training plus overhead)"
        )
    return lines


def stream_notes(throughput: Mapping[str, Any]) -> list[str]:
    """The streams table beside the packing table: threads of one process replaying graphs on their own
    streams against as many processes, and whether either reaches the aggregate bar."""
    packing = throughput.get("packing", [])
    processes = {row["processes"]: row["aggregate_images_per_second"] for row in packing}
    lines = []
    for row in throughput.get("streams", []):
        count, rate = row["threads"], row["aggregate_images_per_second"]
        beside = "" if processes.get(count) is None else f"; {count} process(es): {processes[count]:,.0f}"
        steps = row.get("step_mode", "graph")
        lines.append(
            f"note: {count} thread(s) of one process, hand-written {steps} steps on a stream each: "
            f"{rate:,.0f} images/s{beside}"
        )
    if lines:
        best_threads = max(row["aggregate_images_per_second"] for row in throughput["streams"])
        best_processes = max(processes.values(), default=0.0)
        reach = [
            what
            for what, rate in (("threads", best_threads), ("processes", best_processes))
            if rate >= AGGREGATE_BAR
        ]
        lines.append(
            f"note: at best threads {best_threads:,.0f}, processes {best_processes:,.0f} images/s; "
            + (f"{' and '.join(reach)} reach" if reach else "neither reaches")
            + f" {AGGREGATE_BAR:,.0f}"
        )
    return lines


def read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def read_run(run_dir: Path) -> RunData | None:
    try:
        return load_run(run_dir, allow_pickle=False)
    except (OSError, RunDirError):
        return None


if __name__ == "__main__":
    sys.exit(main())
