"""Training steps on one GPU: launch-bound eager steps against CUDA-graph replays, measured side by side.

Five tables, every number from this one run on this one device (ratios are what to trust across runs):

1. ``steps``: lenet-small at batch 21, 128 and 512, fp32. Pipelines: ``tutorial`` (a DataLoader over CPU
   tensors, shuffled, each batch moved with ``.to(device)``: the tutorial's shape without torchvision's
   per-image transforms), ``hand-eager`` (a hand-written loop over device tensors), ``hand-graph`` (the same
   loop with the whole step captured as one CUDA graph: torch's "whole network capture"), and
   ``trainer-graph`` / ``trainer-eager`` (:func:`workers.trainer.train`, one epoch of all the training
   images whatever ``--train-images`` says, ``step_mode`` graph / eager). Images/s and microseconds per
   step; the ratio trainer-graph / hand-graph is printed.
2. ``precision``: the trainer (batch 128, eager and graph step modes) in fp32 (torch's defaults: TF32 for
   convolutions only), tf32 (matrix products too), bf16 autocast and fp16 with a gradient scaler (which
   always steps eagerly) for lenet-small, seed 000's network (2 x 62 filters 5x5) and the largest network
   of the ``full`` space (3 x 128 filters 7x7, no pooling, 4 x 1024 units) on 28x28 and 32x32 images.
3. ``packing``: 1, 2, 4 and 8 trainer processes (batch 128, step mode auto, 1 torch thread each) training
   at once on the device: each warms up, says it is ready, and all start together on the parent's word
   (their CUDA start-ups are seconds apart); then 20 epochs each, validation cut to one batch of 1024:
   aggregate images/s = all their training images / (last end - first start).
4. ``autotune``: cuDNN's autotuner (``cudnn.benchmark``, which the workers turn on) on and off, each in a
   fresh process that warms up as a worker does (``workers.warm_up``) and then trains 1-epoch jobs of four
   architectures it has not seen, as a search's first jobs are: training seconds and overhead (job wall
   minus training) in all. Autotuning pays per new architecture; these jobs are short.
5. ``streams``: 1, 2, 4 and 8 threads of this one process, each replaying its own hand-written graph
   (lenet-small, batch 128) on its own CUDA stream, all started together: aggregate images/s. Processes
   without NVIDIA's MPS take turns on a GPU; one process's streams may run kernels at once. What the
   packing table cannot show: whether several trials per worker process would pass the processes' plateau.

The 28x28 images are real MNIST from ``DATA_DIR/MNIST/raw`` where present (else the 8x8 digits, named in
the output); the 32x32 images are random (3 channels, 10 classes): throughput does not depend on pixels.
``--device cpu --quick`` runs every table small, in seconds, so a CPU test keeps this script working::

    python3 benchmarks/gpu_throughput.py --data-dir .data --train-images 10000 --out gpu-throughput.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.nn import functional  # noqa: E402

from workers.data import DatasetTensors, load_dataset  # noqa: E402
from workers.device import configure_device  # noqa: E402
from workers.models import build_model  # noqa: E402
from workers.trainer import train  # noqa: E402

LENET_SMALL = {"conv_layers": 2, "filters": 16, "kernel_size": 3, "units": 128, "optimizer": "sgd"}
SEED_000 = {"conv_layers": 2, "filters": 62, "kernel_size": 5, "units": 128, "optimizer": "sgd"}
FULL_LARGEST = {
    "conv_layers": 3, "filters": 128, "kernel_size": 7, "pooling": "none", "linear_layers": 4, "units": 1024,
    "optimizer": "sgd",
}  # fmt: skip
LEARNING_RATE = 0.01
STEP_BATCHES = (21, 128, 512)
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
PACKING = (1, 2, 4, 8)
# New architectures (and batch sizes) for the autotune table: every one a first for its process.
FIRST_JOBS = (
    {**LENET_SMALL, "batch_size": 21},
    {**SEED_000, "batch_size": 64},
    {"conv_layers": 3, "filters": 32, "kernel_size": 5, "units": 256, "optimizer": "adam", "batch_size": 128},
    {"conv_layers": 1, "filters": 8, "kernel_size": 7, "units": 64, "optimizer": "sgd", "batch_size": 256},
)
TABLES = ("steps", "precision", "packing", "autotune", "streams")
# The packing children's handshake with their parent (stdout, stdin), and their held-out images.
READY, GO = "ready", "go"
PACK_HELD_OUT = 1024
Measure = Callable[[], tuple[float, float]]  # -> (images/s, microseconds per step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="small data, few steps: a smoke run")
    parser.add_argument("--out", type=Path, help="also write the tables as JSON here")
    parser.add_argument(
        "--train-images",
        type=int,
        help="train on the first N images (default: all); the steps table always takes one epoch of all",
    )
    parser.add_argument(
        "--tables",
        default=",".join(TABLES),
        help=f"which tables, comma-separated (default: {','.join(TABLES)})",
    )
    parser.add_argument("--pack-child", type=int, help=argparse.SUPPRESS)  # one process of the packing table
    parser.add_argument("--autotune-child", choices=("on", "off"), help=argparse.SUPPRESS)  # table 4
    arguments = parser.parse_args(argv)
    chosen = [name.strip() for name in arguments.tables.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(TABLES))
    if unknown:
        parser.error(f"unknown table(s) {', '.join(unknown)}: choose from {', '.join(TABLES)}")
    device = torch.device(arguments.device)
    configure_device(device)
    size = Size.quick_run() if arguments.quick else Size.full(arguments.train_images)
    mnist = images_28(arguments.data_dir, device, size.train_images)
    if arguments.pack_child is not None:
        return pack_child(mnist, device, size.pack_epochs)
    if arguments.autotune_child is not None:
        return autotune_child(mnist, device, arguments.autotune_child == "on")
    print(f"# GPU throughput on {describe(device)}, torch {torch.__version__}; 28x28 data: {mnist.name}")
    tables: dict[str, Any] = {"device": describe(device)}
    measurements: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "steps": lambda: step_table(images_28(arguments.data_dir, device, size.step_images), device, size),
        "precision": lambda: precision_table(mnist, images_32(device, size.train_images), device, size),
        "packing": lambda: packing_table(arguments, size),
        "autotune": lambda: autotune_table(arguments),
        "streams": lambda: stream_table(mnist, device, size),
    }
    for name in chosen:
        tables[name] = measurements[name]()
        if arguments.out is not None:  # after each table: a run stopped by its time limit keeps the rest
            arguments.out.write_text(json.dumps(tables, indent=1))
    return 0


@dataclass(frozen=True)
class Size:
    """How much each measurement trains: the full run, or a smoke run (``--quick``)."""

    train_images: int | None
    # The steps table's training images (None: all): one epoch of them, so that the epoch's one smaller
    # batch, which steps eagerly, weighs as it does in a search (1 in 79 steps at batch 128 on 10,000
    # images, ~8 % of the trainer's time on the H200; 1 in 391 on MNIST's 50,000).
    step_images: int | None
    hand_steps: int
    packing: tuple[int, ...]
    # Epochs each packed process trains once all are ready: long enough that their start-up skew is
    # small against it (20 epochs of 10,000 images: ~0.5 s alone at the 379k images/s of gpu-facts).
    pack_epochs: int
    # Steps each thread of the streams table replays: ~0.3 s alone at batch 128 on the H200 (gpu-facts).
    stream_steps: int
    quick: bool

    @classmethod
    def full(cls, train_images: int | None) -> Size:
        return cls(train_images, None, 300, PACKING, 20, 1000, quick=False)

    @classmethod
    def quick_run(cls) -> Size:
        # lenet-small only, fp32 only: the big networks take minutes per epoch on a CPU.
        return cls(1100, 1100, 5, (1, 2), 2, 5, quick=True)  # two batches of 512


def describe(device: torch.device) -> str:
    return (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )


def images_28(data_dir: Path, device: torch.device, limit: int | None) -> DatasetTensors:
    if (data_dir / "MNIST" / "raw").is_dir():
        return load_dataset("mnist", data_dir, device, train_limit=limit)
    return load_dataset("digits", None, device, train_limit=limit)


def images_32(device: torch.device, limit: int | None) -> DatasetTensors:
    count = limit or 20_000
    held_count = min(1000, count)
    generator = torch.Generator().manual_seed(0)
    total = count + 2 * held_count
    images = torch.randn(total, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (total,), generator=generator).to(device)
    train_part, held = slice(0, count), slice(count, count + held_count)
    test_part = slice(count + held_count, total)
    return DatasetTensors(
        "random 3x32x32", images[train_part], labels[train_part], images[held], labels[held],
        images[test_part], labels[test_part], 10,
    )  # fmt: skip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Table 1: the steps.


def step_table(data: DatasetTensors, device: torch.device, size: Size) -> list[dict[str, Any]]:
    rows = []
    print("\n| pipeline | batch | images/s | us/step |\n|---|---|---|---|")
    for batch in STEP_BATCHES:
        pipelines: dict[str, Measure] = {
            "tutorial": lambda b=batch: tutorial_loop(data, device, b, size.hand_steps),
            "hand-eager": lambda b=batch: hand_loop(data, device, b, size.hand_steps, graph=False),
            "trainer-eager": lambda b=batch: trainer_rate(LENET_SMALL, data, device, b, mode="eager"),
        }
        if device.type == "cuda":
            pipelines["hand-graph"] = lambda b=batch: hand_loop(data, device, b, size.hand_steps, graph=True)
            # The trainer runs conv models channels-last (measured faster on CPUs): is it on this GPU?
            pipelines["hand-graph-channels-last"] = lambda b=batch: hand_loop(
                data, device, b, size.hand_steps, graph=True, memory_format=torch.channels_last
            )
            pipelines["trainer-graph"] = lambda b=batch: trainer_rate(
                LENET_SMALL, data, device, b, mode="graph"
            )
        measured = {name: measure() for name, measure in pipelines.items()}
        for name, (rate, micros) in measured.items():
            print(f"| {name} | {batch} | {rate:,.0f} | {micros:,.0f} |")
            rows.append({"pipeline": name, "batch": batch, "images_per_second": rate, "us_per_step": micros})
        if "hand-graph" in measured:
            ratio = measured["trainer-graph"][0] / measured["hand-graph"][0]
            print(f"| trainer-graph / hand-graph | {batch} | {ratio:.2f}x | |")
    return rows


def tutorial_loop(data: DatasetTensors, device: torch.device, batch: int, steps: int) -> tuple[float, float]:
    dataset = torch.utils.data.TensorDataset(data.train_x.cpu(), data.train_y.cpu())
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    model, optimizer = lenet(data, device)
    batches = iter(loader)
    started, taken = time.perf_counter(), 0
    for cpu_images, cpu_labels in batches:
        images, labels = cpu_images.to(device), cpu_labels.to(device)
        optimizer.zero_grad()
        loss = functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        taken += 1
        if taken % 10 == 0:  # the tutorial logs the loss every 10 batches
            loss.item()
        if taken >= steps * 3:
            break
    synchronize(device)
    return rates(time.perf_counter() - started, taken, batch)


def lenet(data: DatasetTensors, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = build_model(LENET_SMALL, data.input_shape, data.n_classes).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)


def hand_loop(
    data: DatasetTensors,
    device: torch.device,
    batch: int,
    steps: int,
    *,
    graph: bool,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, float]:
    loop = HandStep.make(data, device, batch, graph=graph, memory_format=memory_format)
    synchronize(device)
    started = time.perf_counter()
    loop.run(steps)
    synchronize(device)
    return rates(time.perf_counter() - started, steps, batch)


@dataclass
class HandStep:
    """lenet-small's training step written by hand over device tensors: eager, or warmed up and captured
    as one CUDA graph (torch's whole-network recipe) on a stream of its own, which replays then use."""

    data: DatasetTensors
    batch: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    static_x: torch.Tensor
    static_y: torch.Tensor
    order: torch.Tensor
    captured: torch.cuda.CUDAGraph | None = None
    # The stream the graph was captured on (None: eager).
    stream: torch.cuda.Stream | None = None

    @classmethod
    def make(
        cls,
        data: DatasetTensors,
        device: torch.device,
        batch: int,
        *,
        graph: bool,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> HandStep:
        model, optimizer = lenet(data, device)
        model = model.to(memory_format=memory_format)
        static_x = data.train_x[:batch].clone(memory_format=memory_format)
        order = torch.randperm(len(data.train_y), device=device)
        made = cls(data, batch, model, optimizer, static_x, data.train_y[:batch].clone(), order)
        if graph:
            made.capture(torch.cuda.Stream(device))
        return made

    def step(self) -> torch.Tensor:
        loss = functional.cross_entropy(self.model(self.static_x), self.static_y)
        loss.backward()
        self.optimizer.step()
        return loss

    def capture(self, stream: torch.cuda.Stream) -> None:
        device = self.static_x.device
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.optimizer.zero_grad(set_to_none=True)
                self.step()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.captured = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.captured, stream=stream):
            self.step()
        self.stream = stream

    def run(self, steps: int) -> None:
        """``steps`` steps, each on a batch copied into the static tensors, on the current stream."""
        batch, order = self.batch, self.order
        for index in range(steps):
            chosen = order[(index * batch) % (len(order) - batch) :][:batch]
            self.static_x.copy_(self.data.train_x.index_select(0, chosen))
            self.static_y.copy_(self.data.train_y.index_select(0, chosen))
            if self.captured is not None:
                self.captured.replay()
            else:
                self.optimizer.zero_grad(set_to_none=True)
                self.step()


def trainer_rate(
    config: dict[str, Any], data: DatasetTensors, device: torch.device, batch: int, *, mode: str
) -> tuple[float, float]:
    outcome = train(
        {**config, "batch_size": batch, "learning_rate": LEARNING_RATE}, 1, device, data,
        precision="fp32", step_mode=mode,
    )  # fmt: skip
    rate = outcome.samples_per_second
    return rate, batch / rate * 1e6


def rates(seconds: float, steps: int, batch: int) -> tuple[float, float]:
    return steps * batch / seconds, seconds / steps * 1e6


# Table 2: precisions.


def precision_table(
    mnist: DatasetTensors, random32: DatasetTensors, device: torch.device, size: Size
) -> list[dict[str, Any]]:
    networks = [
        ("lenet-small", LENET_SMALL, mnist),
        ("seed-000 62x5x5", SEED_000, mnist),
        ("full-largest", FULL_LARGEST, mnist),
        ("full-largest", FULL_LARGEST, random32),
    ]
    if size.quick:
        networks = [("lenet-small", LENET_SMALL, mnist), ("lenet-small", LENET_SMALL, random32)]
    precisions = PRECISIONS if device.type == "cuda" else ("fp32",)
    rows = []
    print("\n| network | images | precision | eager img/s | graph img/s | graph / eager | step mode used |")
    print("|---|---|---|---|---|---|---|")
    for name, config, data in networks:
        size = "x".join(str(side) for side in data.input_shape[1:])
        for precision in precisions:
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            trained = "fp32" if precision == "tf32" else precision
            options = {"batch_size": 128, "learning_rate": LEARNING_RATE}
            eager = train({**config, **options}, 1, device, data, precision=trained, step_mode="eager")
            graph = train({**config, **options}, 1, device, data, precision=trained, step_mode="auto")
            ratio = graph.samples_per_second / eager.samples_per_second
            used = graph.step_mode + (f" ({graph.step_mode_reason})" if graph.step_mode_reason else "")
            print(
                f"| {name} | {size} | {precision} | {eager.samples_per_second:,.0f} | "
                f"{graph.samples_per_second:,.0f} | {ratio:.2f}x | {used} |"
            )
            rows.append({
                "network": name, "images": size, "precision": precision,
                "eager_images_per_second": eager.samples_per_second,
                "graph_images_per_second": graph.samples_per_second, "step_mode": graph.step_mode,
                "step_mode_reason": graph.step_mode_reason,
            })  # fmt: skip
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


# Table 3: several trainer processes on one device.


def packing_table(arguments: argparse.Namespace, size: Size) -> list[dict[str, Any]]:
    rows = []
    print("\n| trainer processes | aggregate images/s | per process | step modes |\n|---|---|---|---|")
    command = child_command(arguments)
    environment = {**child_environment(), "OMP_NUM_THREADS": "1"}
    for count in size.packing:
        children = [
            subprocess.Popen(
                [*command, "--pack-child", str(index)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environment,
                text=True,
            )  # fmt: skip
            for index in range(count)
        ]
        # Each child starts CUDA and warms up at its own pace (seconds apart); then all train at once, so
        # the window below is time they shared the device, not one start-up after another.
        for child in children:
            wait_until_ready(child)
        for child in children:
            assert child.stdin is not None
            child.stdin.write(GO + "\n")
            child.stdin.flush()
        outputs = [child.communicate()[0] for child in children]
        if any(child.returncode != 0 for child in children):
            raise SystemExit(
                f"a packing process failed: exit codes {[child.returncode for child in children]}"
            )
        reports = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
        wall = max(report["ended"] for report in reports) - min(report["started"] for report in reports)
        aggregate = sum(report["samples"] for report in reports) / wall
        modes = ", ".join(sorted({report["step_mode"] for report in reports}))
        print(f"| {count} | {aggregate:,.0f} | {aggregate / count:,.0f} | {modes} |")
        starts = [report["started"] for report in reports]
        rows.append({
            "processes": count, "aggregate_images_per_second": aggregate, "step_modes": modes,
            "epochs_per_process": size.pack_epochs, "start_spread_seconds": max(starts) - min(starts),
        })  # fmt: skip
    return rows


def wait_until_ready(child: subprocess.Popen[str]) -> None:
    """Read ``child``'s output until it says it is ready; SystemExit when it ends first."""
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == READY:
            return
    raise SystemExit(f"a packing process ended before it was ready: exit code {child.wait()}")


def child_command(arguments: argparse.Namespace) -> list[str]:
    """This script, for a child process measuring on the same device and data."""
    command = [sys.executable, str(Path(__file__).resolve()), "--device", arguments.device]
    command += ["--data-dir", str(arguments.data_dir), *(["--quick"] if arguments.quick else [])]
    if arguments.train_images is not None:
        command += ["--train-images", str(arguments.train_images)]
    return command


def child_environment() -> dict[str, str]:
    """This environment, with the project first on the import path and what was there kept behind it (the
    device machine finds the packages it lacks, carried as wheels, through PYTHONPATH)."""
    inherited = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *([inherited] if inherited else [])])}


# Table 5: several graph-replaying threads in one process.


def stream_table(data: DatasetTensors, device: torch.device, size: Size) -> list[dict[str, Any]]:
    """Aggregate images/s of 1, 2, 4, 8 hand-written lenet-small loops at batch 128 in threads of this one
    process, each replaying its own graph on its own CUDA stream: kernels of one process's streams may run
    at once, where separate processes without MPS take turns on the device. An upper bound for running
    several trials per worker process, which the workers do not do (yet)."""
    rows = []
    print("\n| threads, one stream each | aggregate images/s | per thread | step |\n|---|---|---|---|")
    graph = device.type == "cuda"
    for count in size.packing:
        # Captured one after another: a capture must not overlap another thread's work on its stream.
        loops = [HandStep.make(data, device, 128, graph=graph) for _ in range(count)]
        for loop in loops:  # a first replay of each graph outside the timing
            with on_stream(loop):
                loop.run(1)
        synchronize(device)
        spans = run_together(loops, size.stream_steps)
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        aggregate = count * size.stream_steps * 128 / wall
        mode = "graph" if graph else "eager"
        print(f"| {count} | {aggregate:,.0f} | {aggregate / count:,.0f} | {mode} |")
        rows.append({
            "threads": count, "aggregate_images_per_second": aggregate, "steps_per_thread": size.stream_steps,
            "step_mode": mode,
        })  # fmt: skip
    return rows


def run_together(loops: list[HandStep], steps: int) -> list[tuple[float, float]]:
    """Run each loop for ``steps`` steps in its own thread (on its graph's stream), all released at once:
    each thread's (start, end), its end when its stream had finished."""
    barrier = threading.Barrier(len(loops))
    spans: list[tuple[float, float] | BaseException] = [RuntimeError("did not run")] * len(loops)

    def work(index: int) -> None:
        loop = loops[index]
        try:
            barrier.wait()
            started = time.perf_counter()
            with on_stream(loop):
                loop.run(steps)
            if loop.stream is not None:
                loop.stream.synchronize()
            spans[index] = (started, time.perf_counter())
        except BaseException as error:  # a thread's error would otherwise only be printed
            barrier.abort()
            spans[index] = error

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(loops))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [span for span in spans if isinstance(span, BaseException)]
    if failed:
        raise SystemExit(f"a replaying thread failed: {type(failed[0]).__name__}: {failed[0]}")
    return [span for span in spans if not isinstance(span, BaseException)]


def on_stream(loop: HandStep) -> contextlib.AbstractContextManager[object]:
    """Work launched inside goes to ``loop``'s stream (where it has one)."""
    return torch.cuda.stream(loop.stream) if loop.stream is not None else contextlib.nullcontext()


# Table 4: cuDNN's autotuner on a search's first jobs.


def autotune_table(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    print("\n| cudnn.benchmark | warm-up s | training s | overhead s (wall - training) | jobs |")
    print("|---|---|---|---|---|")
    environment = child_environment()
    for setting in ("off", "on"):
        child = subprocess.run(
            [*child_command(arguments), "--autotune-child", setting],
            capture_output=True, text=True, env=environment, check=False,
        )  # fmt: skip
        if child.returncode != 0:
            raise SystemExit(f"the autotune process ({setting}) failed: {child.stderr[-2000:]}")
        report = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"| {setting} | {report['warm_up']:.2f} | {report['training']:.2f} | {report['overhead']:.2f} "
            f"| {report['jobs']} |"
        )
        rows.append({"cudnn_benchmark": setting, **report})
    return rows


def autotune_child(data: DatasetTensors, device: torch.device, benchmark: bool) -> int:
    from workers.warm_up import warm_up

    torch.backends.cudnn.benchmark = benchmark
    warm_seconds = warm_up(device, data, "fp32", "auto")
    training = overhead = 0.0
    for architecture in FIRST_JOBS:
        config = {**architecture, "learning_rate": LEARNING_RATE}
        started = time.monotonic()
        outcome = train(config, 1, device, data, precision="fp32", step_mode="auto")
        wall = time.monotonic() - started
        training += outcome.train_seconds
        overhead += wall - outcome.train_seconds
    report = {"warm_up": warm_seconds, "training": training, "overhead": overhead, "jobs": len(FIRST_JOBS)}
    print(json.dumps(report))
    return 0


def pack_child(data: DatasetTensors, device: torch.device, epochs: int) -> int:
    torch.set_num_threads(1)
    # Training throughput: each epoch's validation pass and the final test pass cut to one batch.
    held_out = {
        name: getattr(data, name)[:PACK_HELD_OUT]
        for name in ("validation_x", "validation_y", "test_x", "test_y")
    }
    data = dataclasses.replace(data, **held_out)
    config = {**LENET_SMALL, "batch_size": 128}
    train(config, 1, device, data, precision="fp32")  # CUDA start, autotuning, capture path
    print(READY, flush=True)
    sys.stdin.readline()  # every process is ready: go
    started = time.time()
    outcome = train(config, epochs, device, data, precision="fp32", step_mode="auto")
    ended = time.time()
    samples = round(outcome.samples_per_second * outcome.train_seconds)
    print(
        json.dumps({"started": started, "ended": ended, "samples": samples, "step_mode": outcome.step_mode})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
