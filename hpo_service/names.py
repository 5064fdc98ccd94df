"""The names the command lines offer as choices (optimizers, search-space presets), in a module that imports
nothing, so that ``--help`` and argument errors answer without loading HpBandSter or ConfigSpace. The
registries (``hpo_service.hpbandster.optimizers.OPTIMIZERS``, ``hpo_service.presets.PRESETS``) hold the
same names; ``tests/integration/test_fast_starts.py`` checks that they agree."""

from __future__ import annotations

OPTIMIZER_NAMES = ("bohb", "hyperband", "randomsearch", "sweep", "grid")
SPACE_NAMES = ("default", "lenet-small", "lenet5", "fashion-cnn", "mlp-bn", "full")
