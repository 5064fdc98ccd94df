"""Train one configuration with the service's trainer and print its test error.

Default: the best configuration of HpBandSter's random-search study on MNIST with the ``lenet-small``
architecture (2 conv layers of 62 filters 5x5, 2x2 max pool, FC 128; SGD, lr 0.037, batch 21, 12 epochs),
for which the study published a test error of 0.98 %::

    python benchmarks/train_config.py --data-dir ../shared/data            # ~10 min on 2 CPU cores
    python benchmarks/train_config.py --config '{"learning_rate": 0.01}' --epochs 3 --dataset digits

The validation split is the workers' (the last 10,000 of MNIST's 60,000 training images are held out), so
the network trains on 50,000 images, not the study's 60,000.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from workers.data import load_dataset
from workers.device import configure_threads, select_device, threads_per_worker
from workers.trainer import train

PUBLISHED_CONFIG = {
    "conv_layers": 2,
    "filters": 62,
    "kernel_size": 5,
    "units": 128,
    "optimizer": "sgd",
    "learning_rate": 0.037,
    "batch_size": 21,
}
PUBLISHED_EPOCHS = 12
PUBLISHED_TEST_ERROR = 0.0098


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=None, help="JSON object overriding keys of the published config")
    parser.add_argument("--epochs", type=int, default=PUBLISHED_EPOCHS)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training run per seed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    config = {**PUBLISHED_CONFIG, **(json.loads(args.config) if args.config else {})}
    device = select_device(args.device)
    configure_threads(args.threads or threads_per_worker(1))
    data_dir = None if args.dataset == "digits" else args.data_dir
    data = load_dataset(args.dataset, data_dir, device)
    print(f"config: {json.dumps(config)}")
    print(f"{args.dataset}: {len(data.train_y)} train / {len(data.validation_y)} validation / "
          f"{len(data.test_y)} test images on {device}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'seed':>4} {'epochs':>6} {'val err %':>9} {'test err %':>10} {'train s':>8} {'images/s':>9}")
    errors = []
    for seed in args.seeds:
        started = time.perf_counter()
        outcome = train(config, args.epochs, device, data, seed=seed)
        errors.append(outcome.test_error)
        print(f"{seed:>4} {outcome.epochs_trained:>6} {100 * outcome.validation_error:>9.2f} "
              f"{100 * outcome.test_error:>10.2f} {time.perf_counter() - started:>8.1f} "
              f"{outcome.samples_per_second:>9.0f}")  # fmt: skip
        curve = ", ".join(f"{100 * error:.2f}" for error in outcome.validation_error_per_epoch)
        print(f"     validation error per epoch (%): {curve}")
    mean = statistics.fmean(errors)
    print(f"test error: mean {100 * mean:.2f} % over {len(errors)} seed(s)", end="")
    if config == PUBLISHED_CONFIG and args.dataset == "mnist" and args.epochs == PUBLISHED_EPOCHS:
        print(f"; published {100 * PUBLISHED_TEST_ERROR:.2f} % (ratio {mean / PUBLISHED_TEST_ERROR:.2f})")
    else:
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
