"""Presets by name: each builds for every dataset, keeps its study's fixed values, and forbids exactly the
architectures that cannot be built (or are too large) for the dataset's input shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ConfigSpace as CS
import pytest

from hpo_service.errors import SettingsError
from hpo_service.shapes import DATASET_SHAPES
from hpo_service.space import (
    SPACE_NAMES,
    build_space,
    forbid_unbuildable,
    load_space,
    unbuildable_reason,
    write_space,
)
from hpo_service.wire import to_builtins

SHAPES = sorted(set(DATASET_SHAPES.values()))


def samples(space: CS.ConfigurationSpace, count: int) -> list[dict[str, Any]]:
    return [to_builtins(dict(config)) for config in space.sample_configuration(count)]


def test_every_preset_is_offered() -> None:
    assert set(SPACE_NAMES) == {"default", "lenet-small", "lenet5", "fashion-cnn", "mlp-bn", "full"}


@pytest.mark.parametrize("name", SPACE_NAMES)
@pytest.mark.parametrize("dataset", sorted(DATASET_SHAPES))
def test_presets_sample_only_buildable_architectures(name: str, dataset: str) -> None:
    shape = DATASET_SHAPES[dataset]
    space = load_space(name, seed=5, dataset=dataset)
    for config in samples(space, 300):
        assert unbuildable_reason(shape, config) is None, config


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_configspace_json_of_every_preset_round_trips(name: str, tmp_path: Path) -> None:
    space = build_space(name, DATASET_SHAPES["cifar10"])
    path = tmp_path / "configspace.json"
    write_space(space, path)

    assert load_space(str(path)) == space


def test_lenet_small_searches_the_published_study() -> None:
    space = build_space("lenet-small", DATASET_SHAPES["mnist"])
    assert space["learning_rate"].log and (space["learning_rate"].lower, space["learning_rate"].upper) == (
        1e-4,
        1e-1,
    )
    assert (space["batch_size"].lower, space["batch_size"].upper) == (16, 128)
    assert (space["filters"].lower, space["filters"].upper) == (8, 64)
    assert set(space["kernel_size"].choices) == {3, 5}
    for config in samples(space, 50):
        assert (config["conv_layers"], config["units"], config["optimizer"]) == (2, 128, "sgd")


def test_lenet5_defaults_are_lenet5() -> None:
    default = to_builtins(dict(build_space("lenet5", DATASET_SHAPES["mnist"]).get_default_configuration()))
    assert default["conv_layers"] == 2
    assert (default["filters_1"], default["filters_2"], default["kernel_size"]) == (20, 50, 5)
    assert (default["stride"], default["pooling"], default["units"]) == (1, "max", 500)


def test_mlp_bn_is_an_mlp_with_batch_norm_adagrad_and_cyclic_rate() -> None:
    for config in samples(build_space("mlp-bn", DATASET_SHAPES["cifar10"]), 50):
        assert config["conv_layers"] == 0 and config["batch_norm"] is True
        assert 3 <= config["linear_layers"] <= 9
        assert (config["optimizer"], config["lr_schedule"]) == ("adagrad", "cyclic")
        assert config["weight_decay"] > 0


def test_fashion_cnn_learning_rates_and_channel_pairs() -> None:
    space = build_space("fashion-cnn", DATASET_SHAPES["fashion-mnist"])
    assert set(space["learning_rate"].choices) == {1e-2, 5e-3, 1e-3, 5e-4}
    assert set(space["channel_pair"].choices) == {"16/32", "32/64", "64/128"}
    assert (space["optimizer"].value, space["linear_layers"].upper) == ("adam", 3)


def test_full_activates_optimizer_parameters_only_where_they_apply() -> None:
    own = {"momentum": {"momentum", "nesterov"}, "beta1": {"adam", "adamw"}, "alpha": {"rmsprop"}}
    seen_optimizers = set()
    for config in samples(build_space("full", DATASET_SHAPES["cifar10"], seed=2), 600):
        seen_optimizers.add(config["optimizer"])
        for key, optimizers in own.items():
            assert (key in config) == (config["optimizer"] in optimizers), config
        assert ("weight_decay" in config) == config["use_weight_decay"]
        assert ("step_gamma" in config) == (config["lr_schedule"] == "step")
        assert ("cycle_epochs" in config) == (config["lr_schedule"] == "cyclic")
        assert ("kernel_size" in config) == (config["conv_layers"] > 0)
        for index in range(1, 5):
            assert (f"units_{index}" in config) == (index <= config["linear_layers"])
    assert len(seen_optimizers) == 7


def test_augmentation_suits_the_images() -> None:
    assert set(build_space("full", (3, 32, 32))["augmentation"].choices) == {"none", "crop_flip"}
    assert set(build_space("full", (1, 28, 28))["augmentation"].choices) == {"none", "affine"}


@pytest.mark.parametrize("shape", SHAPES)
def test_forbidden_clauses_exclude_exactly_the_unbuildable_architectures(shape: tuple[int, int, int]) -> None:
    space = build_space("full", shape)
    base = {
        key: value
        for key, value in to_builtins(dict(space.get_default_configuration())).items()
        if not key.startswith("filters_")
    }
    allowed = forbidden = 0
    for layers in range(1, 4):
        for kernel in (1, 3, 5, 7):
            for stride in (1, 2):
                for padding in ("same", "valid"):
                    for pooling in ("max", "avg", "none"):
                        config = {**base, "conv_layers": layers, "kernel_size": kernel, "stride": stride,
                                  "padding": padding, "pooling": pooling}  # fmt: skip
                        config.update({f"filters_{i}": 16 for i in range(1, layers + 1)})
                        try:
                            CS.Configuration(space, values=config)  # validates, forbidden clauses too
                            is_allowed = True
                        except (ValueError, CS.exceptions.ForbiddenValueError):
                            is_allowed = False
                        assert is_allowed == (unbuildable_reason(shape, config) is None), config
                        allowed += is_allowed
                        forbidden += not is_allowed
    assert allowed > 0 and forbidden > 0


def test_a_space_with_no_buildable_architecture_is_refused() -> None:
    space = CS.ConfigurationSpace()
    space.add([CS.Constant("conv_layers", 3), CS.Constant("kernel_size", 7), CS.Constant("padding", "valid")])
    with pytest.raises(SettingsError, match="collapses below 1x1 after conv layer 2"):
        forbid_unbuildable(space, (1, 8, 8))


def test_a_huge_integer_range_cannot_be_enumerated() -> None:
    space = CS.ConfigurationSpace()
    space.add(CS.Integer("kernel_size", (1, 999)))
    with pytest.raises(SettingsError, match="kernel_size"):
        forbid_unbuildable(space, (1, 8, 8))


def test_master_settings_reject_an_unknown_dataset(tmp_path: Path) -> None:
    from hpo_service.settings import MasterSettings

    with pytest.raises(SettingsError, match="unknown dataset 'imagenet'"):
        MasterSettings(run_dir=tmp_path, run_id="r", dataset="imagenet")
