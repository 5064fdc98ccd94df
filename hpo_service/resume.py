"""``--resume RUN_DIR``: continue a run whose master stopped (killed, interrupted) in the same run dir.

The rules:

- **What is read.** ``run.json`` (optimizer, budgets, eta, iterations, seed, dataset, run id),
  ``configspace.json`` (the space: the resumed run uses it, never ``--space``), ``sweep.json`` for a sweep
  or grid (the plan is rebuilt from it and must come out the same), ``configs.json`` and ``results.json``.
  A last line without its newline (a master killed mid-write) is dropped with a warning and cut from the
  file; any other line that is not JSON is an error. Options the run fixes (optimizer, budgets, eta,
  iterations, seed, dataset, run id, space, study options) may be repeated on the command line only with the
  run's own values; a different value is refused.
- **Old results are kept.** Every logged result stays in ``results.json`` (new lines are appended) and is
  part of the final ``results.pkl``. Crashed results (no result, or a non-finite loss) stay crashed.
- **Iterations.** Each logged iteration is rebuilt by replaying its configurations and results, in the
  order they were logged, through HpBandSter's own iteration (same bracket: it depends on the iteration's
  index), so old config ids stay and new ones continue after them (no collision). A finished iteration
  counts as done. An interrupted one (two when the master had begun the next) continues where it
  stopped: its jobs that had no result (running or waiting when the master died) run again under their old
  config id, and its later stages are sampled as usual. Then ``n_iterations`` minus the rebuilt iterations
  new ones run (none left and nothing to re-run: only ``results.pkl`` is written, no worker needed).
  A run resumed several times keeps everything: each resume reads all lines, old and new.
- **Model.** BOHB's model (any config generator) gets every logged result before the first new sample, as
  HpBandSter's ``previous_result`` would, crashed runs as crashed (``result=None``, or a result without a
  numeric loss given loss infinity): upstream's warm start fed ``loss=None`` to ``np.isfinite`` (#32, #95).
- **Sweeps and grids.** The plan's (configuration, seed) jobs that were handed out are replayed like an
  iteration: those with a result are kept, the others run again; the jobs never handed out run as usual.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpo_service import run_files
from hpo_service.bohb_options import OPTION_NAMES, BohbOptions
from hpo_service.errors import RunDirectoryError, SettingsError
from hpo_service.records import RunDescription
from hpo_service.run_spec import NO_CONTINUATION, RunSpec
from hpo_service.run_spec import OPTIONS as RUN_OPTIONS
from hpo_service.sweeps.options import STUDY_OPTIMIZERS, SweepOptions

logger = logging.getLogger(__name__)

# Options a run fixes: MasterSettings field -> command-line option (the space is compared as a space).
FIXED_BY_RUN = {
    **{option.field: option.flag for option in RUN_OPTIONS if option.field != "space"},
    "run_id": "--run-id",
    "continuation": NO_CONTINUATION,
}
STUDY_OPTIONS = ("base", "vary", "repeats", "max_jobs", "force", "space_from_sweep")


@dataclass
class LoggedRun:
    """What a run dir holds: its description, and its JSON logs in file order."""

    run_dir: Path
    description: dict[str, Any]
    configs: list[list[Any]] = field(default_factory=list)
    results: list[list[Any]] = field(default_factory=list)
    # file -> byte length to cut it to (a truncated last line to drop)
    cut: dict[Path, int] = field(default_factory=dict)

    def config_ids(self) -> set[tuple[int, ...]]:
        return {tuple(line[0]) for line in self.configs}


def resumed_seed(seed: int, run: LoggedRun) -> int:
    """The seed of a resumed run's random generators: the run's seed and how far it got (a run resumed
    twice at the same point draws the same numbers)."""
    return (seed * 1_000_003 + 7919 * (len(run.configs) + 1) + len(run.results)) % 2**32


def read_json_lines(path: Path, cut: dict[Path, int]) -> list[Any]:
    """The JSON lines of ``path`` (none if missing); a last line without newline that is not JSON is dropped
    (recorded in ``cut``); any other bad line raises RunDirectoryError."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[Any] = []
    offset = 0
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        if not raw.strip():
            offset += len(raw) + 1
            continue
        try:
            records.append(json.loads(raw))
        except ValueError as error:
            if last:  # no newline after it: written only in part
                logger.warning(
                    "%s: last line %d is incomplete (%d bytes, a master stopped while writing it); "
                    "dropping it",
                    path, number, len(raw),
                )  # fmt: skip
                cut[path] = offset
                break
            raise RunDirectoryError(
                f"{path}: line {number} is not valid JSON ({error}); the log is damaged, resume refused"
            ) from None
        offset += len(raw) + 1
    return records


def load_run(run_dir: Path, option: str = "--resume") -> LoggedRun:
    """Read a run dir (to resume it, or to warm-start from it: ``option`` names which in messages);
    RunDirectoryError when it is not a run or its logs are damaged."""
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{option} {run_dir}: no such directory")
    for name in (run_files.RUN_DESCRIPTION, run_files.SPACE):
        if not (run_dir / name).is_file():
            raise RunDirectoryError(f"{option} {run_dir}: not a run directory (no {name})")
    try:
        description = json.loads((run_dir / run_files.RUN_DESCRIPTION).read_text())
        if not isinstance(description, dict):
            raise ValueError("not an object")
    except ValueError as error:
        raise RunDirectoryError(f"{option} {run_dir}: run.json is not valid ({error})") from None
    required = ("run_id", "optimizer", "min_budget", "max_budget", "eta", "n_iterations")
    missing = [key for key in required if key not in description]
    if missing:
        raise RunDirectoryError(f"{option} {run_dir}: run.json lacks {', '.join(missing)}")
    run = LoggedRun(run_dir, description)
    run.configs = read_json_lines(run_dir / run_files.CONFIGS, run.cut)
    run.results = read_json_lines(run_dir / run_files.RESULTS, run.cut)
    known = set()
    for number, line in enumerate(run.configs, start=1):
        if not (isinstance(line, list) and len(line) == 3 and _is_id(line[0]) and isinstance(line[1], dict)):
            raise RunDirectoryError(
                f"{run_dir / 'configs.json'}: line {number} is not [config_id, config, info]"
            )
        known.add(tuple(line[0]))
    for number, line in enumerate(run.results, start=1):
        well_formed = isinstance(line, list) and len(line) == 5 and _is_id(line[0])
        if not (well_formed and isinstance(line[1], int | float) and isinstance(line[3], dict | None)):
            raise RunDirectoryError(
                f"{run_dir / 'results.json'}: line {number} is not "
                "[config_id, budget, times, result, exception]"
            )
        if tuple(line[0]) not in known:
            raise RunDirectoryError(
                f"{run_dir / 'results.json'}: line {number} names config {tuple(line[0])}, "
                "which configs.json does not hold"
            )
    return run


def _is_id(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(isinstance(item, int) for item in value)


def explicit_options(parser: Any, argv: Any) -> dict[str, Any]:
    """The options given on the command line, without defaults (``parser`` is used up)."""
    import argparse

    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def open_description(run_dir: Path, spec: RunSpec) -> RunDescription:
    """The resumed run's ``run.json``, rewritten (in this version's form) when ``spec``, the spec it resumes
    with, adds to what the run recorded: workers read the spec there. The recorded space name is kept
    (``spec.space`` is the run's ``configspace.json``)."""
    path = run_dir / run_files.RUN_DESCRIPTION
    record = json.loads(path.read_text())
    recorded = RunDescription.from_dict(record)
    description = replace(recorded, spec=replace(spec, space=recorded.spec.space))
    if description.to_dict() != record:
        run_files.write_json(path, description.to_dict())
    return description


def settings_fields(run_dir: Path, given: Mapping[str, Any]) -> dict[str, Any]:
    """MasterSettings fields of a resumed run: the run's own, with ``given`` (explicit command-line values)
    checked against them. ``given`` may hold any MasterSettings field plus ``space`` (a spec) and the
    study options; a conflicting one raises SettingsError naming the option and both values."""
    given_dir = given.get("run_dir")
    if given_dir is not None and Path(given_dir).resolve() != run_dir.resolve():
        raise SettingsError(f"--run-dir {given_dir} and --resume {run_dir}: a run resumes in its own dir")
    run = load_run(run_dir)
    stored = run.description
    fields: dict[str, Any] = {
        **RunSpec.from_record(stored).values(),
        "run_dir": run_dir,
        "run_id": stored["run_id"],
        "space": str(run_dir / run_files.SPACE),
        "resume": True,
        "bohb": stored_bohb_options(run_dir, stored, given),
    }
    if "train_limit" not in stored and "train_limit" in given:
        # A run recorded before the limit was part of the spec gave it to its workers: give it again.
        fields["train_limit"] = given["train_limit"]
    study = fields["optimizer"] in STUDY_OPTIMIZERS
    for name, option in FIXED_BY_RUN.items():
        if name not in given or (study and name in ("min_budget", "n_iterations")):
            continue
        value = given[name]
        if isinstance(value, float) or isinstance(fields[name], float):
            same = math.isclose(float(value), float(fields[name]))
        else:
            same = value == fields[name]
        if not same:
            shown = "continuation (--no-continuation)" if name == "continuation" else option
            raise SettingsError(
                f"--resume {run_dir}: {shown} {value} differs from the run's {fields[name]}; "
                "a resumed run keeps its own settings (leave the option out)"
            )
    if "space" in given:
        check_same_space(run_dir, str(given["space"]), stored.get("space"), fields["dataset"])
    if not study:  # a study's configurations carry their seed and are checked against sweep.json instead
        check_logged_configs(run)
    if study:
        if any(name in given for name in STUDY_OPTIONS):
            raise SettingsError(
                f"--resume {run_dir}: the study's options come from its sweep.json; leave --base, --vary, "
                "--repeats, --max-jobs, --force and --space-from-sweep out"
            )
        fields["sweep"] = sweep_options_from_plan(run_dir)
    elif "space_from_sweep" in given:
        raise SettingsError(f"--resume {run_dir}: --space-from-sweep applies to new runs only")
    elif any(name in given for name in STUDY_OPTIONS):
        raise SettingsError(
            f"--resume {run_dir}: --base, --vary, --repeats, --max-jobs and --force apply to sweeps and "
            f"grids only; this run is {fields['optimizer']}"
        )
    return fields


def stored_bohb_options(run_dir: Path, stored: Mapping[str, Any], given: Mapping[str, Any]) -> BohbOptions:
    """A resumed run's BOHB settings and warm start as its run.json holds them (defaults for a run recorded
    before they existed). A given option must agree; the warm-start runs are fed again, so they must exist."""
    sources = (stored.get("warm_start") or {}).get("runs", [])
    warm_start = tuple(Path(source["run_dir"]) for source in sources)
    options = BohbOptions.from_record(stored.get("bohb"), warm_start)
    for name, option in OPTION_NAMES.items():
        value, own = given.get(name, getattr(options, name)), getattr(options, name)
        same = value == own or (None not in (value, own) and math.isclose(float(value), float(own)))
        if not same:
            raise SettingsError(
                f"--resume {run_dir}: {option} {value} differs from the run's {own}; "
                "a resumed run keeps its own settings (leave the option out)"
            )
    if "warm_start" in given and [Path(path).resolve() for path in given["warm_start"]] != list(warm_start):
        raise SettingsError(
            f"--resume {run_dir}: --warm-start differs from the run's "
            f"({' '.join(map(str, warm_start)) or 'none'}); a resumed run feeds its own warm start again "
            "(leave --warm-start out)"
        )
    for path in warm_start:
        if not path.is_dir():
            raise SettingsError(
                f"--resume {run_dir}: its warm-start run {path} is gone (a resumed run feeds it to the model "
                "again); restore that directory"
            )
    return options


def check_same_space(run_dir: Path, spec: str, stored_spec: Any, dataset: str) -> None:
    from hpo_service.space import SPACE_NAMES, load_space

    if spec == stored_spec and spec in SPACE_NAMES:
        return  # a file of the same name may have been edited since: only a preset name is the same space

    if load_space(spec, dataset=dataset) != load_space(str(run_dir / run_files.SPACE), dataset=dataset):
        raise SettingsError(
            f"--resume {run_dir}: --space {spec} is not the run's search space "
            f"({run_dir / 'configspace.json'}); "
            "a resumed run keeps its space (leave --space out)"
        )


def check_logged_configs(run: LoggedRun) -> None:
    """RunDirectoryError unless every logged configuration belongs to the run's ``configspace.json``: the
    replay would otherwise fail half way (a space file replaced or edited by hand)."""
    import ConfigSpace as CS

    from hpo_service.space import load_space

    path = run.run_dir / run_files.SPACE
    space = load_space(str(path))
    for line in run.configs:
        try:
            CS.Configuration(space, values=line[1])
        except (ValueError, TypeError, KeyError, IndexError) as error:
            config_id = "_".join(str(part) for part in line[0])
            raise RunDirectoryError(
                f"--resume {run.run_dir}: {path.name} does not match the run's logs: configuration "
                f"{config_id} ({error})"
            ) from None


def sweep_options_from_plan(run_dir: Path) -> SweepOptions:
    """The study options that rebuild the run's plan from ``sweep.json`` (checked in ``check_plan``)."""
    path = run_dir / run_files.STUDY_PLAN
    try:
        plan = json.loads(path.read_text())
        base = tuple(f"{name}={_text(value)}" for name, value in plan["base"].items())
        vary = tuple(
            f"{name}={','.join(_text(value) for value in values)}" for name, values in plan["varied"].items()
        )
        return SweepOptions(base=base, vary=vary, repeats=int(plan["repeats"]), force=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunDirectoryError(
            f"--resume {run_dir}: sweep.json is missing or not valid ({error!r})"
        ) from None


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def check_plan(run_dir: Path, plan_dict: Mapping[str, Any]) -> None:
    stored = json.loads((run_dir / run_files.STUDY_PLAN).read_text())
    if json.dumps(stored, sort_keys=True) != json.dumps(json.loads(json.dumps(plan_dict)), sort_keys=True):
        raise RunDirectoryError(f"--resume {run_dir}: the study's plan does not rebuild from sweep.json")


def repair_logs(run: LoggedRun) -> None:
    """Cut the incomplete last lines, so that appended lines start on a line of their own."""
    for path, length in run.cut.items():
        os.truncate(path, length)
        logger.warning("%s: cut to %d bytes (the incomplete last line removed)", path, length)
    run.cut.clear()


def appending_logger(logger_class: type, run_dir: Path, config_ids: set[tuple[int, ...]]) -> Any:
    """The service's JSON result logger, appending to ``run_dir``'s logs instead of starting them anew."""
    scratch = tempfile.mkdtemp(prefix="resume-", dir=run_dir)
    try:
        result_log = logger_class(scratch, overwrite=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result_log.config_fn = str(run_dir / run_files.CONFIGS)
    result_log.results_fn = str(run_dir / run_files.RESULTS)
    result_log.config_ids = set(config_ids)
    return result_log


class _Exhausted(Exception):
    """The replayed iteration asks for a configuration the logs do not hold: it was not sampled yet."""


@dataclass
class Restored:
    iterations: int  # iterations rebuilt (finished or interrupted)
    results: int  # logged results replayed
    rerun: int  # jobs without a result that run again


def logged_job(line: list[Any], config: dict[str, Any], budget: float) -> Any:
    """HpBandSter's Job of a ``results.json`` line, as a config generator takes it (``new_result``)."""
    from hpbandster.core.dispatcher import Job

    job = Job(tuple(line[0]), config=config, budget=budget)
    job.timestamps = dict(line[2] or {})
    result = line[3]
    if result is not None and not _number(result.get("loss")):
        # No numeric loss: counts as crashed (upstream's warm start passed loss=None to np.isfinite and
        # raised, #32/#95); the info is kept.
        result = {**result, "loss": math.inf}
    job.result = result
    job.exception = line[4]
    return job


def restore(
    master: Any, run: LoggedRun, result_log: Any, time_ref: float | None, fit_model: bool = True
) -> Restored:
    """Rebuild ``master``'s iterations and its config generator's model from ``run``'s logs (see the module
    text). Call after the master is built and before ``master.run``. ``fit_model``: False when more results
    (a warm start) are fed to the config generator after these."""
    configs = {tuple(line[0]): (line[1], line[2]) for line in run.configs}
    by_iteration: dict[int, list[tuple[int, ...]]] = {}
    for config_id in configs:
        by_iteration.setdefault(config_id[0], []).append(config_id)
    results: dict[tuple[tuple[int, ...], float], list[Any]] = {}
    for line in run.results:
        results[(tuple(line[0]), round(float(line[1]), 9))] = line
    if master.iterations:
        raise RuntimeError("restore() needs a master that has not run yet")
    if time_ref is not None:
        master.time_ref = time_ref
        master.config["time_ref"] = time_ref
    last = max(by_iteration, default=-1)
    rerun = 0
    for index in range(last + 1):
        iteration, pending = _replay_iteration(
            master, index, by_iteration.get(index, []), configs, results=results, run=run
        )
        rerun += pending
        iteration.result_logger = result_log
        master.iterations.append(iteration)
    if results:
        raise RunDirectoryError(
            f"{run.run_dir}: {len(results)} logged results do not replay, e.g. {next(iter(results))} "
            "(logs inconsistent with the optimizer's settings)"
        )
    _feed_model(master.config_generator, run, configs, fit_model)
    return Restored(iterations=last + 1, results=len(run.results), rerun=rerun)


def _replay_iteration(
    master: Any,
    index: int,
    config_ids: list[tuple[int, ...]],
    configs: Mapping[tuple[int, ...], tuple[Any, Any]],
    *,
    results: dict[tuple[tuple[int, ...], float], list[Any]],
    run: LoggedRun,
) -> tuple[Any, int]:
    """Iteration ``index`` rebuilt by HpBandSter's own iteration from its logged configurations, in order;
    its results taken out of ``results``. Returns it with the number of its jobs that run again."""
    iteration = master.get_next_iteration(index, {})
    queue = deque(config_ids)
    handed: list[tuple[int, ...]] = []

    def replay_sampler(budget: Any) -> tuple[Any, Any]:
        if not queue:
            raise _Exhausted
        handed.append(queue.popleft())
        return configs[handed[-1]]

    iteration.config_sampler = replay_sampler
    pending: list[tuple[int, ...]] = []
    while True:
        try:
            step = iteration.get_next_run()
        except _Exhausted:
            break
        if step is None:
            break
        config_id, config, budget = step
        config_id = tuple(config_id)
        logged = results.pop((config_id, round(float(budget), 9)), None)
        if logged is None:
            pending.append(config_id)
        else:
            iteration.register_result(logged_job(logged, config, budget))
    unmatched = [config_id for config_id in handed if config_id not in iteration.data] + list(queue)
    if unmatched:
        raise RunDirectoryError(
            f"{run.run_dir}: configs {unmatched} of iteration {index} do not replay (logs inconsistent "
            "with the optimizer's settings)"
        )
    for config_id in pending:  # handed out, no result: they run again
        iteration.data[config_id].status = "QUEUED"
        iteration.num_running -= 1
    iteration.config_sampler = master.config_generator.get_config
    return iteration, len(pending)


def _feed_model(
    generator: Any, run: LoggedRun, configs: Mapping[tuple[int, ...], tuple[Any, Any]], fit_model: bool
) -> None:
    """Every logged result to the config generator, in the order they arrived; fitted once, at the last. A
    study's plan drops the jobs handed out before (they are not handed out again)."""
    for number, line in enumerate(run.results, start=1):
        config = configs[tuple(line[0])][0]
        generator.new_result(
            logged_job(line, config, float(line[1])),
            update_model=number == len(run.results) and fit_model,
        )
    pending_plan = getattr(generator, "pending", None)
    if isinstance(pending_plan, deque):
        sampled = {_key(config) for config, _ in configs.values()}
        kept = [job for job in pending_plan if _key(job.config) not in sampled]
        pending_plan.clear()
        pending_plan.extend(kept)


def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
