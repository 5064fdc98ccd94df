"""Training and evaluation images per second: the service's trainer against the tutorial pipeline and
hand-written tensor loops, the same network on the same machine, runs interleaved.

Pipelines (all train ``lenet-small`` from :func:`workers.models.build_model` on real MNIST, batch 128, SGD):

- ``tutorial``: PyTorch's MNIST example as people write it: ``torchvision.datasets.MNIST`` with per-image
  ``ToTensor`` + ``Normalize``, a ``DataLoader`` (shuffle, no worker processes), float32; evaluation on the
  test set in batches of 1,000 under ``no_grad`` with ``.item()`` per batch. The IDX files are unpacked from
  ``DATA_DIR/MNIST/raw/*.gz`` into a temporary directory (torchvision reads uncompressed files only).
- ``tensor``, ``tensor+cl``, ``tensor+cl+bf16``: a minimal hand-written loop over one in-memory tensor,
  batches by a random permutation, then channels-last, then bf16 autocast; evaluation in batches of 2,048
  under ``inference_mode``. The best of these is the bar for the trainer.
- ``trainer``: :func:`workers.trainer.train` for one epoch (its ``samples_per_second`` counts the training
  steps only) with the workers' default precision, and :func:`workers.trainer.evaluate` for evaluation.

Each round runs every pipeline once, in a rotated order; the table shows the median and the range over
the rounds. The process re-executes itself with the workers' allocator settings
(``launch.local.WORKER_ENVIRONMENT``) unless ``--no-worker-environment`` is given, so every pipeline runs in
the environment the workers have::

    .venv/bin/python benchmarks/train_throughput.py --data-dir ../shared/data            # ~3 min, 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.nn import functional  # noqa: E402

from launch.local import WORKER_ENVIRONMENT  # noqa: E402
from workers.data import DatasetTensors, load_dataset  # noqa: E402
from workers.device import configure_threads  # noqa: E402
from workers.models import build_model  # noqa: E402
from workers.precision import resolve_precision  # noqa: E402
from workers.trainer import evaluate, train  # noqa: E402

LENET_SMALL = {"conv_layers": 2, "filters": 16, "kernel_size": 3, "units": 128, "batch_size": 128}
BATCH_SIZE = 128
TUTORIAL_TEST_BATCH = 1000
EVALUATION_BATCH = 2048
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# Acceptance (issue 4): the trainer against the tutorial and against the best hand-written loop.
TUTORIAL_FACTOR, HAND_WRITTEN_FACTOR = 3.5, 0.9

CPU = torch.device("cpu")


@dataclass
class Rates:
    """Images per second of one pipeline, one entry per round."""

    train: list[float]
    evaluate: list[float]


Measure = Callable[[], tuple[float, float]]


# The tutorial pipeline.


@contextlib.contextmanager
def unpacked_mnist(data_dir: Path) -> Iterator[Path]:
    """A temporary torchvision root with ``MNIST/raw`` holding the uncompressed IDX files."""
    source = data_dir / "MNIST" / "raw"
    with tempfile.TemporaryDirectory(prefix="mnist-") as root:
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for packed in source.glob("*-ubyte.gz"):
            with gzip.open(packed, "rb") as reader, open(raw / packed.name[:-3], "wb") as writer:
                shutil.copyfileobj(reader, writer)
        yield Path(root)


def tutorial_pipeline(root: Path, seed: int) -> Measure:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    train_set = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    test_set = datasets.MNIST(str(root), train=False, download=False, transform=transform)
    generator = torch.Generator().manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=BATCH_SIZE, shuffle=True, generator=generator
    )
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=TUTORIAL_TEST_BATCH)

    def measure() -> tuple[float, float]:
        torch.manual_seed(seed)
        model = build_model(LENET_SMALL, (1, 28, 28), 10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        model.train()
        started = time.perf_counter()
        for index, (images, labels) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            if index % 10 == 0:  # the tutorial logs the loss every log_interval (10) batches
                loss.item()
        train_rate = len(train_set) / (time.perf_counter() - started)
        model.eval()
        started = time.perf_counter()
        test_loss = correct = 0.0
        with torch.no_grad():
            for images, labels in test_loader:
                output = model(images)
                test_loss += functional.cross_entropy(output, labels, reduction="sum").item()
                correct += (output.argmax(dim=1) == labels).sum().item()
        return train_rate, len(test_set) / (time.perf_counter() - started)

    return measure


# The hand-written tensor loops.


def tensor_pipeline(data: DatasetTensors, seed: int, *, channels_last: bool, bf16: bool) -> Measure:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images, labels = data.train_x, data.train_y

    def measure() -> tuple[float, float]:
        torch.manual_seed(seed)
        model = build_model(LENET_SMALL, data.input_shape, data.n_classes).to(memory_format=memory_format)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        model.train()
        started = time.perf_counter()
        for start in range(0, len(labels), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            batch = images.index_select(0, index).contiguous(memory_format=memory_format)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = functional.cross_entropy(model(batch), labels.index_select(0, index))
            loss.backward()
            optimizer.step()
        train_rate = len(labels) / (time.perf_counter() - started)
        model.eval()
        started = time.perf_counter()
        # Loss and error, as the trainer's evaluation reports both.
        loss_sum = torch.zeros((), dtype=torch.float64)
        wrong = torch.zeros((), dtype=torch.int64)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(data.validation_y), EVALUATION_BATCH):
                end = start + EVALUATION_BATCH
                logits = model(data.validation_x[start:end].contiguous(memory_format=memory_format)).float()
                loss_sum += functional.cross_entropy(logits, data.validation_y[start:end], reduction="sum")
                wrong += (logits.argmax(dim=1) != data.validation_y[start:end]).sum()
        loss_sum.item(), wrong.item()
        return train_rate, len(data.validation_y) / (time.perf_counter() - started)

    return measure


# The service's trainer.


def trainer_pipeline(data: DatasetTensors, seed: int, precision: str) -> Measure:
    resolved = resolve_precision(precision, CPU)

    def measure() -> tuple[float, float]:
        outcome = train(LENET_SMALL, 1, CPU, data, seed=seed, precision=precision)
        model = build_model(LENET_SMALL, data.input_shape, data.n_classes).to(
            memory_format=torch.channels_last
        )
        started = time.perf_counter()
        evaluate(model, data.validation_x, data.validation_y, precision=resolved)
        return outcome.samples_per_second, len(data.validation_y) / (time.perf_counter() - started)

    return measure


# Running and reporting.


def run_rounds(pipelines: dict[str, Measure], rounds: int) -> dict[str, Rates]:
    names = list(pipelines)
    for name in names:  # warm-up: the first optimizer imports torch._dynamo, autocast builds its caches
        pipelines[name]()
    rates = {name: Rates([], []) for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            train_rate, evaluate_rate = pipelines[name]()
            rates[name].train.append(train_rate)
            rates[name].evaluate.append(evaluate_rate)
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return rates


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):>8,.0f}  [{min(values):>7,.0f} – {max(values):>7,.0f}]"


def report(rates: dict[str, Rates], load_before: float, load_after: float, precision: str) -> bool:
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; trainer precision {precision}"
    )
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after\n")
    print(f"{'pipeline':<16} {'train img/s: median [range]':>33} {'eval img/s: median [range]':>33}")
    for name, rate in rates.items():
        print(f"{name:<16} {summary(rate.train):>33} {summary(rate.evaluate):>33}")
    median = {name: statistics.median(rate.train) for name, rate in rates.items()}
    hand_written = [name for name in rates if name.startswith("tensor")]
    best = max(hand_written, key=median.__getitem__)
    versus_tutorial = median["trainer"] / median["tutorial"]
    versus_best = median["trainer"] / median[best]
    print(f"\ntrainer / tutorial:            {versus_tutorial:5.2f}x  (acceptance >= {TUTORIAL_FACTOR})")
    print(
        f"trainer / best hand-written:   {versus_best:5.2f}x  ({best}; acceptance >= {HAND_WRITTEN_FACTOR})"
    )
    for name in hand_written:
        print(f"{name} / tutorial: {median[name] / median['tutorial']:5.2f}x")
    evaluate_median = {name: statistics.median(rate.evaluate) for name, rate in rates.items()}
    print(f"eval: trainer / tutorial {evaluate_median['trainer'] / evaluate_median['tutorial']:5.2f}x")
    return versus_tutorial >= TUTORIAL_FACTOR and versus_best >= HAND_WRITTEN_FACTOR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=REPO.parent / "shared" / "data", help="holds MNIST/raw/*-ubyte.gz"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument(
        "--precision", default="auto", help="the trainer's precision (workers' default: auto)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-worker-environment",
        action="store_true",
        help="do not re-execute with the workers' allocator settings",
    )
    args = parser.parse_args(argv)  # fmt: skip
    if not args.no_worker_environment and any(os.environ.get(k) != v for k, v in WORKER_ENVIRONMENT.items()):
        # glibc reads these at start-up only: a fresh process, as the launcher starts workers.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WORKER_ENVIRONMENT})
    configure_threads(args.threads or os.cpu_count() or 1)
    load_before = os.getloadavg()[0]
    data = load_dataset("mnist", args.data_dir, CPU)
    with unpacked_mnist(args.data_dir) as root:
        pipelines = {
            "tutorial": tutorial_pipeline(root, args.seed),
            "tensor": tensor_pipeline(data, args.seed, channels_last=False, bf16=False),
            "tensor+cl": tensor_pipeline(data, args.seed, channels_last=True, bf16=False),
            "tensor+cl+bf16": tensor_pipeline(data, args.seed, channels_last=True, bf16=True),
            "trainer": trainer_pipeline(data, args.seed, args.precision),
        }
        rates = run_rounds(pipelines, args.rounds)
    resolved = resolve_precision(args.precision, CPU).name
    accepted = report(rates, load_before, os.getloadavg()[0], resolved)
    print("acceptance: " + ("met" if accepted else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
