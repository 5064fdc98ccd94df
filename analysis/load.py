"""Read one run directory into :class:`~analysis.data.RunData`.

A run directory holds HpBandSter's final pickle ``results.pkl`` and/or its JSON logs ``configs.json``
(one ``[config_id, config, config_info]`` per line) and ``results.json`` (one
``[config_id, budget, timestamps, result, exception]`` per line), and, when hpo-service wrote it,
``run.json``. Plain HpBandSter scripts write no ``run.json``: the optimizer is then ``"unknown"``.

The JSON logs are parsed here with :mod:`json` (no HpBandSter needed), so a run can be read while it is
going; a truncated last line (the writer was interrupted) is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from analysis.data import CRASHED, OK, ConfigId, JobRecord, RunData, RunMetadata, finite_or_none
from analysis.pickles import PickleRefused, load_result_pickle
from hpo_service import run_files

__all__ = ["JobRecord", "RunData", "RunDirError", "RunMetadata", "load_run", "read_metadata"]

logger = logging.getLogger(__name__)

PICKLE_FILE = run_files.RESULT_PICKLE
CONFIGS_FILE = run_files.CONFIGS
RESULTS_FILE = run_files.RESULTS
DESCRIPTION_FILE = run_files.RUN_DESCRIPTION

# Status given to a result whose loss is missing or not finite when the worker wrote no status.
FAILED = "failed"

T = TypeVar("T")


class RunDirError(ValueError):
    """The directory is missing, is not a run directory, or holds a file that cannot be read."""


class RawJob(NamedTuple):
    """One job as HpBandSter stores it, before normalisation."""

    config_id: ConfigId
    budget: float
    timestamps: Mapping[str, Any]
    result: Any
    exception: Any


@dataclass
class RawRun:
    jobs: list[RawJob] = field(default_factory=list)
    configs: dict[ConfigId, dict[str, Any]] = field(default_factory=dict)
    config_info: dict[ConfigId, dict[str, Any]] = field(default_factory=dict)
    # What the job times are measured from (HpBandSter's ``time_ref`` for a pickle, 0 for the logs).
    time_reference: float = 0.0
    # HpBandSter's ``Result.HB_config`` (pickles only): eta and budgets when there is no run.json.
    hyperband_config: Mapping[str, Any] = field(default_factory=dict)


def load_run(run_dir: Path | str, *, prefer: str = "pickle", allow_pickle: bool = True) -> RunData:
    """Read ``run_dir``: ``results.pkl`` when present and ``prefer == "pickle"``, else the JSON logs.

    ``prefer="json"`` reads the logs when they exist and falls back to the pickle; ``allow_pickle=False``
    never opens ``results.pkl`` (a pickle can run code: open only your own). ``run.json`` is read when
    present. Raises :class:`RunDirError` naming what it looked for when there is nothing to read.
    """
    if prefer not in ("pickle", "json"):
        raise ValueError(f"prefer must be 'pickle' or 'json', not {prefer!r}")
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunDirError(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory")
    pickle_path = run_dir / PICKLE_FILE
    has_pickle = pickle_path.is_file()
    has_logs = (run_dir / CONFIGS_FILE).is_file() or (run_dir / RESULTS_FILE).is_file()
    if not has_logs and not (has_pickle and allow_pickle):
        skipped = f" ({PICKLE_FILE} is there but pickles are not loaded)" if has_pickle else ""
        raise RunDirError(
            f"{run_dir}: not a run directory: found neither {PICKLE_FILE} nor the JSON logs "
            f"{CONFIGS_FILE}/{RESULTS_FILE}{skipped}"
        )
    use_pickle = has_pickle and allow_pickle and (prefer == "pickle" or not has_logs)
    raw = read_pickle(pickle_path) if use_pickle else read_logs(run_dir)
    metadata = read_metadata(run_dir / DESCRIPTION_FILE, raw.hyperband_config)
    jobs, origin = normalise_jobs(raw.jobs)
    return RunData(
        run_dir=run_dir,
        source=PICKLE_FILE if use_pickle else f"{CONFIGS_FILE} + {RESULTS_FILE}",
        metadata=metadata,
        jobs=jobs,
        configs=raw.configs,
        config_info=raw.config_info,
        time_origin=None if origin is None else raw.time_reference + origin,
    )


# --- the JSON logs ----------------------------------------------------------------------------------


def read_logs(run_dir: Path) -> RawRun:
    """Parse ``configs.json`` and ``results.json`` (either may be missing while a run starts)."""
    raw = RawRun()
    configs_path, results_path = run_dir / CONFIGS_FILE, run_dir / RESULTS_FILE
    for path in (configs_path, results_path):
        if path.exists() and not path.is_file():
            raise RunDirError(f"{path} is not a file")
    if configs_path.is_file():
        for config_id, config, config_info in read_lines(configs_path, parse_config_line):
            raw.configs[config_id] = config
            raw.config_info[config_id] = config_info
    if results_path.is_file():
        raw.jobs = read_lines(results_path, parse_result_line)
    unknown = sorted({job.config_id for job in raw.jobs} - raw.configs.keys())
    if unknown:
        logger.warning(
            "%s: %d configuration(s) have results but no line in %s, e.g. %s",
            run_dir, len(unknown), CONFIGS_FILE, unknown[0],
        )  # fmt: skip
        for config_id in unknown:
            raw.configs[config_id] = {}
            raw.config_info[config_id] = {}
    return raw


def read_lines(path: Path, parse: Callable[[Any], T]) -> list[T]:
    """One parsed record per non-blank line; a broken last line is skipped with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RunDirError(f"{path}: not UTF-8 text ({error})") from error
    except OSError as error:
        raise RunDirError(f"{path}: cannot be read ({error.strerror or error})") from error
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    # Only a line the writer was cut off in (no newline after it yet) is forgiven; a complete bad line is
    # damage, even when it is the only one (the run would otherwise look empty).
    cut_short = not text.endswith("\n")
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            records.append(parse(json.loads(line)))
        except ValueError as error:
            if index == len(lines) - 1 and cut_short:
                logger.warning("%s: ignoring line %d, cut short or malformed (%s)", path, number, error)
                break
            raise RunDirError(f"{path}:{number}: corrupt line ({error})") from error
    return records


def parse_config_line(record: Any) -> tuple[ConfigId, dict[str, Any], dict[str, Any]]:
    if not isinstance(record, list) or len(record) not in (2, 3):
        raise ValueError("expected [config_id, config, config_info]")
    config = record[1]
    if not isinstance(config, dict):
        raise ValueError("the configuration is not a JSON object")
    config_info = record[2] if len(record) == 3 else {}
    return parse_config_id(record[0]), config, config_info if isinstance(config_info, dict) else {}


def parse_result_line(record: Any) -> RawJob:
    if not isinstance(record, list) or len(record) != 5:
        raise ValueError("expected [config_id, budget, timestamps, result, exception]")
    config_id, budget, timestamps, result, exception = record
    if not isinstance(timestamps, dict):
        raise ValueError("the timestamps are not a JSON object")
    return RawJob(parse_config_id(config_id), parse_budget(budget), timestamps, result, exception)


def parse_config_id(value: Any) -> ConfigId:
    if isinstance(value, list | tuple) and len(value) == 3:
        try:
            first, second, third = (int(part) for part in value)
        except (TypeError, ValueError):
            pass
        else:
            return (first, second, third)
    raise ValueError(f"malformed config id {value!r}")


def parse_budget(value: Any) -> float:
    budget = finite_or_none(value)
    if budget is None:
        raise ValueError(f"malformed budget {value!r}")
    return budget


# --- the pickle -------------------------------------------------------------------------------------


def read_pickle(path: Path) -> RawRun:
    """The jobs of HpBandSter's pickled ``Result``."""
    hint = "; --json-only reads the JSON logs instead"
    try:
        result = load_result_pickle(path)
    except PickleRefused as error:
        raise RunDirError(f"{path}: refused to load this pickle: {error}{hint}") from error
    except ModuleNotFoundError as error:
        raise RunDirError(f"{path}: loading this pickle needs the module {error.name!r}{hint}") from error
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, IndexError, TypeError) as error:
        raise RunDirError(f"{path}: corrupt pickle ({type(error).__name__}: {error}){hint}") from error
    data = getattr(result, "data", None)
    hyperband_config = getattr(result, "HB_config", None)
    if not isinstance(data, Mapping) or not isinstance(hyperband_config, Mapping):
        raise RunDirError(f"{path}: not an HpBandSter Result (found {type(result).__name__}){hint}")
    try:
        raw = result_to_raw(data)
    except (AttributeError, TypeError, ValueError) as error:
        raise RunDirError(f"{path}: unexpected contents ({type(error).__name__}: {error}){hint}") from error
    raw.time_reference = finite_or_none(hyperband_config.get("time_ref")) or 0.0
    raw.hyperband_config = hyperband_config
    return raw


def result_to_raw(data: Mapping[Any, Any]) -> RawRun:
    """``Result.data``: config id -> ``Datum`` with results, time stamps and exceptions per budget."""
    raw = RawRun()
    for key, datum in data.items():
        config_id = parse_config_id(key)
        raw.configs[config_id] = builtin(dict(datum.config or {}))
        config_info = getattr(datum, "config_info", None)
        raw.config_info[config_id] = builtin(dict(config_info)) if isinstance(config_info, Mapping) else {}
        for budget, result in datum.results.items():
            timestamps = datum.time_stamps.get(budget) or {}
            exception = datum.exceptions.get(budget)
            raw.jobs.append(RawJob(config_id, parse_budget(budget), timestamps, builtin(result), exception))
    return raw


def builtin(value: Any) -> Any:
    """``value`` with numpy scalars and arrays (stock HpBandSter pickles hold them) as plain Python."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {builtin(key): builtin(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(builtin(item) for item in value)
    return value


# --- run.json ---------------------------------------------------------------------------------------


def read_metadata(path: Path, hyperband_config: Mapping[str, Any] | None = None) -> RunMetadata:
    """``run.json`` as :class:`RunMetadata`; budgets and eta fall back to HpBandSter's ``HB_config``."""
    fields: dict[str, Any] = {}
    if path.is_file():
        try:
            description = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise RunDirError(f"{path}: corrupt ({error})") from error
        if not isinstance(description, dict):
            raise RunDirError(f"{path}: expected a JSON object")
        fields = description
    fallback = hyperband_config or {}

    def number(name: str) -> float | None:
        value = finite_or_none(fields.get(name))
        return value if value is not None else finite_or_none(fallback.get(name))

    def integer(name: str) -> int | None:
        value = finite_or_none(fields.get(name))
        return int(value) if value is not None and math.isclose(value, round(value)) else None

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    return RunMetadata(
        optimizer=text("optimizer") or "unknown",
        run_id=text("run_id"),
        min_budget=number("min_budget"),
        max_budget=number("max_budget"),
        eta=number("eta"),
        n_iterations=integer("n_iterations"),
        seed=integer("seed"),
        dataset=text("dataset"),
        space=text("space"),
    )


# --- normalisation shared by both sources -----------------------------------------------------------


def normalise_jobs(raw_jobs: list[RawJob]) -> tuple[tuple[JobRecord, ...], float | None]:
    """Job records with times relative to the first submission (returned too, in the source's clock)."""
    if not raw_jobs:
        return (), None
    times = [job_times(job) for job in raw_jobs]
    origin = min(submitted for submitted, _, _ in times)
    jobs = [
        job_record(job, submitted - origin, started - origin, finished - origin)
        for job, (submitted, started, finished) in zip(raw_jobs, times, strict=True)
    ]
    jobs.sort(key=lambda job: (job.finished, job.submitted, job.config_id, job.budget))
    return tuple(jobs), origin


def job_times(job: RawJob) -> tuple[float, float, float]:
    stamps = job.timestamps
    submitted = finite_or_none(stamps.get("submitted"))
    started = finite_or_none(stamps.get("started"))
    finished = finite_or_none(stamps.get("finished"))
    first = next((value for value in (submitted, started, finished) if value is not None), None)
    if first is None:
        raise RunDirError(f"job {job.config_id} on budget {job.budget:g} has no time stamps")
    submitted = first if submitted is None else submitted
    started = submitted if started is None else started
    return submitted, started, started if finished is None else finished


def job_record(job: RawJob, submitted: float, started: float, finished: float) -> JobRecord:
    exception = None if job.exception is None else str(job.exception)
    status: str | None
    if job.result is None:
        loss, status, info = None, CRASHED, {}
        reason: str | None = last_line(exception) or "no result"
    else:
        result = job.result if isinstance(job.result, Mapping) else {"loss": job.result}
        raw_info = result.get("info")
        info = (
            dict(raw_info)
            if isinstance(raw_info, Mapping)
            else ({} if raw_info is None else {"info": raw_info})
        )
        loss = finite_or_none(result.get("loss"))
        status = info.get("status") if isinstance(info.get("status"), str) else None
        reason = info.get("reason") if isinstance(info.get("reason"), str) else None
        if loss is None and status in (None, OK):
            status, reason = FAILED, reason or f"non-finite loss {result.get('loss')!r}"
    return JobRecord(
        config_id=job.config_id,
        budget=job.budget,
        loss=loss,
        status=status or OK,
        reason=reason,
        info=info,
        submitted=submitted,
        started=started,
        finished=finished,
        exception=exception,
    )


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def last_line(text: str | None) -> str | None:
    """The last non-blank line of a traceback: the exception itself."""
    if not text:
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None
