"""The YAML form of a search space: what it builds, and the error each mistake gives (file and key named)."""

from __future__ import annotations

from pathlib import Path

import ConfigSpace as CS
import pytest

from hpo_service.errors import SettingsError
from hpo_service.space import load_space, unbuildable_reason, write_space
from hpo_service.wire import to_builtins

EXAMPLE = """
# A LeNet-ish space with conditions.
hyperparameters:
  learning_rate: {range: [1e-4, 0.1], log: true, default: 0.01}
  batch_size: {range: [16, 128], log: true}
  dropout: {range: [0, 0.5], type: float}
  optimizer: {choices: [sgd, momentum, adam], default: sgd}
  momentum: {range: [0.5, 0.99]}
  conv_layers: {range: [1, 3]}
  kernel_size: {choices: [3, 5, 7]}
  padding: {choices: [same, valid]}
  filters_1: {range: [8, 64], log: true}
  filters_2: {range: [8, 64], log: true}
  units: 128
conditions:
  momentum: {optimizer: [momentum]}
  filters_2: {conv_layers: ">= 2"}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_space_builds_ranges_choices_constants_and_conditions(tmp_path: Path) -> None:
    space = load_space(str(write(tmp_path, EXAMPLE)), seed=1, dataset="digits")

    assert isinstance(space["learning_rate"], CS.UniformFloatHyperparameter) and space["learning_rate"].log
    assert space["learning_rate"].lower == pytest.approx(1e-4)
    assert isinstance(space["batch_size"], CS.UniformIntegerHyperparameter)
    assert isinstance(space["dropout"], CS.UniformFloatHyperparameter)
    assert space["units"].value == 128
    assert space["optimizer"].default_value == "sgd"
    for config in (to_builtins(dict(c)) for c in space.sample_configuration(300)):
        assert ("momentum" in config) == (config["optimizer"] == "momentum")
        assert ("filters_2" in config) == (config["conv_layers"] >= 2)
        # Digits are 8x8: three valid 7x7 layers would collapse, and the file did not have to say so.
        assert unbuildable_reason((1, 8, 8), config) is None
    assert space.forbidden_clauses


def test_forbid_unbuildable_can_be_turned_off(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE + "forbid_unbuildable: false\n")
    assert not load_space(str(path), dataset="digits").forbidden_clauses


def test_yaml_space_round_trips_through_configspace_json(tmp_path: Path) -> None:
    space = load_space(str(write(tmp_path, EXAMPLE)), dataset="mnist")
    write_space(space, tmp_path / "configspace.json")
    assert load_space(str(tmp_path / "configspace.json")) == space


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hyperparameters: [a, b]\n", "'hyperparameters' must be a non-empty mapping"),
        ("hyperparameters:\n  lr: {range: [1, 2]\n", r"not valid YAML at line \d+"),
        ("hyperparameters:\n  lr: {range: [0.1]}\n", r"hyperparameters\.lr: range must be \[low, high\]"),
        ("hyperparameters:\n  lr: {range: [0.1, 0.01]}\n", r"hyperparameters\.lr: range needs low < high"),
        ("hyperparameters:\n  lr: {range: [0, 1], log: true}\n", r"hyperparameters\.lr: a log range must be"),
        ("hyperparameters:\n  lr: {range: [a, 1]}\n", r"hyperparameters\.lr\.range: expected a number"),
        ("hyperparameters:\n  lr: {range: [0.1, 1], default: 5}\n", r"hyperparameters\.lr: default 5"),
        ("hyperparameters:\n  lr: {range: [1, 2], type: complex}\n", r"hyperparameters\.lr: type must be"),
        ("hyperparameters:\n  lr: {range: [1, 2], choices: [1]}\n", r"hyperparameters\.lr: give exactly one"),
        ("hyperparameters:\n  lr: {rnage: [1, 2]}\n", r"hyperparameters\.lr: unknown key\(s\) \['rnage'\]"),
        ("hyperparameters:\n  o: {choices: []}\n", r"hyperparameters\.o: choices must be a non-empty list"),
        ("hyperparameters:\n  o: {choices: [a, a]}\n", r"hyperparameters\.o: choices must be distinct"),
        ("hyperparameters:\n  o: {choices: [a, b], default: c}\n", r"hyperparameters\.o: default 'c'"),
        ("hyperparameters:\n  o: {choices: [a], log: true}\n", r"hyperparameters\.o: 'log' and 'type'"),
        ("hyperparameters:\n  o: [a, b]\n", r"hyperparameters\.o: give a value"),
        ("hyperparameters:\n  o: 1\nconditoins: {}\n", r"unknown key\(s\) \['conditoins'\]"),
        (
            "hyperparameters:\n  o: {choices: [a, b]}\nconditions:\n  m: {o: [a]}\n",
            r"conditions\.m: no hyper",
        ),
        (
            "hyperparameters:\n  o: {choices: [a, b]}\n  m: {range: [0, 1]}\nconditions:\n  m: {x: [a]}\n",
            r"conditions\.m\.x: no hyperparameter named 'x'",
        ),
        (
            "hyperparameters:\n  o: {choices: [a, b]}\n  m: {range: [0, 1]}\nconditions:\n  m: {o: [c]}\n",
            r"conditions\.m",
        ),
        (
            "hyperparameters:\n  o: {range: [0.0, 1.0]}\n  m: {range: [0, 1]}\n"
            "conditions:\n  m: {o: '>= 0.5'}\n",
            r"conditions\.m\.o: '>=' needs an integer parent",
        ),
        ("hyperparameters:\n  o: 1\nforbid_unbuildable: maybe\n", "forbid_unbuildable must be true or false"),
        ("just a string\n", "expected a mapping"),
    ],
)
def test_bad_yaml_names_the_key_or_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError, match=message) as error:
        load_space(str(path))
    assert str(path) in str(error.value)


def test_yaml_whose_fixed_architecture_collapses_is_refused(tmp_path: Path) -> None:
    text = "hyperparameters:\n  conv_layers: 3\n  kernel_size: 7\n  padding: valid\n  lr: {range: [0.1, 1]}\n"
    with pytest.raises(SettingsError, match="cannot be built for input 1x8x8"):
        load_space(str(write(tmp_path, text)), dataset="digits")


def test_every_name_the_presets_and_workers_use_is_a_known_hyperparameter() -> None:
    """The list a space file is checked against (a typo is refused) holds every preset's names and every
    field the workers' specs read, so no real name is refused."""
    from dataclasses import fields

    from hpo_service.space import SPACE_NAMES, build_space
    from hpo_service.vocabulary import HYPERPARAMETER_NAMES
    from workers.models import ArchitectureSpec
    from workers.training_spec import TrainingSpec

    for name in SPACE_NAMES:
        assert set(build_space(name)) <= HYPERPARAMETER_NAMES, name
    for spec in (ArchitectureSpec, TrainingSpec):
        assert {field.name for field in fields(spec)} <= HYPERPARAMETER_NAMES, spec


def test_a_misspelled_name_is_refused_with_the_closest_one(tmp_path: Path) -> None:
    path = write(tmp_path, "hyperparameters:\n  learning_rat: {range: [0.001, 0.1], log: true}\n")
    with pytest.raises(SettingsError, match="did you mean 'learning_rate'"):
        load_space(str(path))
