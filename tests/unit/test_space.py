"""The default search space: ranges, conditions, and the JSON round trip of configspace.json."""

from __future__ import annotations

import math
from pathlib import Path

import ConfigSpace as CS
import pytest

from hpo_service.errors import SettingsError
from hpo_service.space import default_space, load_space, write_space


def test_samples_respect_ranges_and_conditions() -> None:
    space = default_space(seed=1)
    for config in space.sample_configuration(300):
        values = dict(config)
        assert 1e-4 <= values["learning_rate"] <= 1e-1
        assert 16 <= values["batch_size"] <= 256
        assert values["optimizer"] in ("sgd", "adam")
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        for index in range(1, 4):
            assert (f"filters_{index}" in values) == (index <= values["conv_layers"])
            if index <= values["conv_layers"]:
                assert 8 <= values[f"filters_{index}"] <= 64
        assert values["kernel_size"] in (3, 5)
        assert 0.0 <= values["dropout"] <= 0.5


def test_learning_rate_and_filters_are_log_scaled() -> None:
    hyperparameters = default_space()
    assert hyperparameters["learning_rate"].log
    assert hyperparameters["filters_1"].log
    rates = [dict(config)["learning_rate"] for config in default_space(seed=3).sample_configuration(400)]
    below = sum(1 for rate in rates if rate < 1e-2)
    # Log-uniform over 1e-4..1e-1: two thirds of the mass below 1e-2 (uniform would put 9 % there).
    assert 0.55 < below / len(rates) < 0.8
    assert all(math.isfinite(rate) for rate in rates)


def test_same_seed_same_samples() -> None:
    first = [dict(c) for c in default_space(seed=7).sample_configuration(5)]
    second = [dict(c) for c in default_space(seed=7).sample_configuration(5)]
    assert first == second


def test_configspace_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "configspace.json"
    write_space(default_space(), path)
    assert load_space(str(path)) == default_space()


def test_unknown_space_and_bad_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="neither a known space"):
        load_space("no-such-space")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SettingsError, match=r"not valid JSON \(line 1"):
        load_space(str(bad))


def test_space_is_a_configspace() -> None:
    assert isinstance(default_space(), CS.ConfigurationSpace)


def test_bohb_forbidden_picks_are_one_debug_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from hpo_service.logging_setup import configure_logging

    configure_logging(verbose=False)
    logger = logging.getLogger("hpbandster")
    logger.warning("=====\\nError converting configuration: ... ForbiddenValueError: vector violates ...")
    logger.warning("a real warning")
    configure_logging(verbose=True)
    logger.warning("Sampling based optimization failed ... ForbiddenValueError ...")
    err = capsys.readouterr().err
    assert "Error converting" not in err and "a real warning" in err
    assert "DEBUG hpbandster: BOHB's model picked a forbidden configuration; using a random one" in err
    logging.getLogger().handlers[:] = []
    logging.getLogger().setLevel(logging.WARNING)
