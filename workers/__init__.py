"""Worker side of hpo-service: device and threads, data, models, the trainer and the HpBandSter worker shell.

The building blocks (:mod:`workers.device`, :mod:`workers.data`, :mod:`workers.models`,
:mod:`workers.trainer`) know nothing about HPO; only :mod:`workers.worker` talks to HpBandSter.
"""
