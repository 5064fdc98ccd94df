"""Probe: a BOHB run over a ConfigSpace 1.x space with numpy 2, stock HpBandSter or with our fixes.

``python tests/support/hang_probe.py stock|fixed``: exits 0 when the run finishes; the stock variant hangs
(the dispatcher thread dies on a numpy value), so the caller runs it under a timeout.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import ConfigSpace as CS
from hpbandster.core.worker import Worker
from hpbandster.optimizers import BOHB

from hpo_service.hpbandster.optimizers import FixedBOHB
from hpo_service.nameserver import LocalNameserver
from hpo_service.pyro_setup import configure_pyro


class StockWorker(Worker):
    def compute(self, config: dict[str, Any], budget: float, **kwargs: Any) -> dict[str, Any]:
        return {"loss": float(config["x"]) / float(budget), "info": {}}


def main(variant: str) -> int:
    logging.basicConfig(level=logging.WARNING)
    configure_pyro()
    space = CS.ConfigurationSpace(seed=0)
    space.add([CS.Float("x", (0.0, 1.0)), CS.Categorical("kind", ["a", "b"]), CS.Categorical("size", [3, 5])])
    optimizer_class = BOHB if variant == "stock" else FixedBOHB
    with LocalNameserver("127.0.0.1", 0) as address:
        worker = StockWorker(
            "probe", nameserver=address.host, nameserver_port=address.port, logger=logging.getLogger("w")
        )
        worker.run(background=True)
        optimizer = optimizer_class(
            configspace=space, run_id="probe", nameserver=address.host, nameserver_port=address.port,
            min_budget=1, max_budget=3, eta=3, ping_interval=1, logger=logging.getLogger("m"),
        )  # fmt: skip
        result = optimizer.run(n_iterations=1, min_n_workers=1)
        optimizer.shutdown(shutdown_workers=True)
    print(len(result.get_all_runs()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
