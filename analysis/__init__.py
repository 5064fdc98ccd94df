"""Analysis of HpBandSter run directories: load, summarise, incumbent trajectories, learning curves,
budget correlations, hyperparameter importance, worker timelines, training cost, report, watch, CLI
(docs/analysis.md).

Reads run directories written by hpo-service or by plain HpBandSter scripts; never imports torch, Pyro4,
``workers`` or ``launch``. Figures live in :mod:`analysis.plots` (imported on demand: matplotlib).
"""

from analysis.data import ConfigId, JobRecord, RunData, RunMetadata
from analysis.incumbents import Trajectory, find_incumbent, incumbent_trajectory
from analysis.load import RunDirError, load_run
from analysis.summary import RunSummary, format_summary, summarize

__all__ = [
    "ConfigId",
    "JobRecord",
    "RunData",
    "RunDirError",
    "RunMetadata",
    "RunSummary",
    "Trajectory",
    "find_incumbent",
    "format_summary",
    "incumbent_trajectory",
    "load_run",
    "summarize",
]
