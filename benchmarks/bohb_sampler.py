"""Master time per BOHB sample: HpBandSter's config generator against ours (``FastBOHBGenerator``), on the
same seeded sequence of samples and results (``tests/integration/test_dispatch.py`` checks that both pick the
same configurations; this measures the time, which a test on a shared machine cannot).

    .venv/bin/python benchmarks/bohb_sampler.py            # default and lenet5 spaces, 90 samples each
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hpbandster.optimizers.config_generators.bohb import BOHB as StockBOHBGenerator  # noqa: E402

from hpo_service.hpbandster.bohb_generator import FastBOHBGenerator  # noqa: E402
from hpo_service.space import build_space, dataset_input_shape, default_space  # noqa: E402
from tests.integration.test_dispatch import sample_in_lockstep  # noqa: E402

SPACES = {
    "default": lambda: default_space(seed=3),
    "lenet5": lambda: build_space("lenet5", dataset_input_shape("digits"), seed=3),
}


def model_pick_seconds(run: dict) -> float:  # type: ignore[type-arg]
    return statistics.median(seconds for seconds, model_based in run["seconds"] if model_based)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=90)
    options = parser.parse_args(argv)
    logging.getLogger("hpbandster").setLevel(logging.CRITICAL)  # upstream warns on forbidden picks
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| space | stock ms per model pick | ours ms | ratio |\n|---|---|---|---|")
    for name, factory in SPACES.items():
        stock = model_pick_seconds(sample_in_lockstep(StockBOHBGenerator, factory(), options.samples))
        fast = model_pick_seconds(sample_in_lockstep(FastBOHBGenerator, factory(), options.samples))
        print(f"| {name} | {stock * 1e3:.1f} | {fast * 1e3:.2f} | {stock / fast:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
