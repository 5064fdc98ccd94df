"""Read HpBandSter's ``results.pkl`` without running HpBandSter's (or anyone's) code.

A pickle can run code when it is loaded. ``results.pkl`` is read only from run directories the user
names, and the unpickler below refuses every global outside a short allowlist: numpy scalars and arrays,
a few builtins, and HpBandSter's ``Result``, ``Datum`` and ``Run``, which are built as plain attribute
holders (:class:`PickledObject`) instead of the real classes. So loading needs no HpBandSter and does not
import it (importing ``hpbandster.core.result`` would import Pyro4 through its dispatcher), and no
HpBandSter method runs on the loaded data. That narrows, but does not remove, the risk of opening a
stranger's file: use the JSON logs for those (``--json-only``).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class PickledObject:
    """Stands in for an HpBandSter class: unpickling sets its attributes (``__dict__``) and nothing else."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(sorted(vars(self)))})"


class PickledResult(PickledObject):
    """``hpbandster.core.result.Result``: ``data`` (config id -> Datum) and ``HB_config``."""


class PickledDatum(PickledObject):
    """``hpbandster.core.base_iteration.Datum``: config, config_info, and results/time_stamps/exceptions
    per budget."""


class PickledRun(PickledObject):
    """``hpbandster.core.result.Run``."""


STAND_INS: dict[tuple[str, str], type] = {
    ("hpbandster.core.result", "Result"): PickledResult,
    ("hpbandster.core.result", "Run"): PickledRun,
    ("hpbandster.core.base_iteration", "Datum"): PickledDatum,
}

# Globals a Result pickle may name that are loaded as themselves.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        # Protocols 0-2 write bytes (numpy scalars' raw data) as _codecs.encode(text, "latin1").
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "object"),
        ("copyreg", "_reconstructor"),
        ("collections", "OrderedDict"),
        # Protocols 0-2 name some of these by their Python 2 names (the Unpickler maps them back).
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
        ("__builtin__", "object"),
        ("copy_reg", "_reconstructor"),
    }
)


class PickleRefused(pickle.UnpicklingError):
    """The pickle names a global that is neither allowed nor stood in for."""


class ResultUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        stand_in = STAND_INS.get((module, name))
        if stand_in is not None:
            return stand_in
        if (module, name) not in ALLOWED_GLOBALS:
            raise PickleRefused(f"it refers to {module}.{name}, which analysis does not load from a pickle")
        return super().find_class(module, name)


def load_result_pickle(path: Path) -> Any:
    """The object in ``path``, built only from allowed classes and stand-ins. Raises what unpickling
    raises."""
    logger.debug("loading pickle %s", path)
    with open(path, "rb") as handle:
        return ResultUnpickler(handle).load()
