"""Sensitivity studies on the search's own workers: one-at-a-time sweeps, grids, repeats over seeds.

- :mod:`~hpo_service.sweeps.options`: the command-line options (``--base``, ``--vary``, ``--repeats``, ...);
- :mod:`~hpo_service.sweeps.values`: ``NAME=V1,V2`` and ``NAME=log:LOW:HIGH:N`` parsed against the space;
- :mod:`~hpo_service.sweeps.plan`: the configurations x seeds of a study, checked against the space;
- :mod:`~hpo_service.sweeps.study_masters`: the HpBandSter master that runs a plan (``sweep``, ``grid``);
- :mod:`~hpo_service.sweeps.narrow` and :mod:`~hpo_service.sweeps.space_edit`: ``--space-from-sweep``;
- :mod:`~hpo_service.sweeps.setup`: what ``run_master`` and the settings call.

Only :mod:`~hpo_service.sweeps.study_masters` imports HpBandSter; the others import ConfigSpace at most, so
the command lines can check a study before any process starts.
"""
