"""Named search spaces (``--space NAME``), each reproducing a study our users ran by hand.

Hyperparameter names and their defaults are the contract in ``docs/hyperparameters.md``: what a preset
leaves out takes the workers' default (ReLU, max pooling, "same" padding, stride 1, one hidden layer of
128 units, no batch norm, SGD, constant learning rate, no augmentation). Values a study fixed are
``Constant``s, so every configuration in the results says what it trained. Builders take the dataset's input
shape because augmentation depends on it; collapsing architectures are forbidden afterwards by
:func:`hpo_service.space.forbid_unbuildable`.
"""

from __future__ import annotations

from collections.abc import Callable

import ConfigSpace as CS

from hpo_service.vocabulary import ACTIVATIONS, INITS, OPTIMIZERS, SCHEDULES

MAX_CONV_LAYERS = 3
FULL_LINEAR_LAYERS = 4

InputShape = tuple[int, int, int] | None


def default_space(input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """LeNet-style CNN: 1-3 conv layers, filters 8-64 (log), kernel 3 or 5, FC units, dropout, SGD/Adam."""
    space = CS.ConfigurationSpace()
    optimizer = CS.Categorical("optimizer", ["sgd", "adam"], default="sgd")
    momentum = CS.Float("momentum", (0.0, 0.99), default=0.9)
    conv_layers = CS.Integer("conv_layers", (1, MAX_CONV_LAYERS), default=2)
    space.add([
        CS.Float("learning_rate", (1e-4, 1e-1), default=1e-2, log=True),
        CS.Integer("batch_size", (16, 256), default=64, log=True),
        optimizer, momentum, conv_layers,
        CS.Categorical("kernel_size", [3, 5], default=3),
        CS.Float("dropout", (0.0, 0.5), default=0.0),
        CS.Integer("fc_units", (16, 256), default=128, log=True),
    ])  # fmt: skip
    space.add(CS.EqualsCondition(momentum, optimizer, "sgd"))
    _add_per_layer(space, "filters", conv_layers, MAX_CONV_LAYERS, bounds=(8, 64), default=16)
    return space


def lenet_small_space(input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """HpBandSter's random-search MNIST study: 2 conv layers (shared filters), 2x2 max pool, FC 128, SGD."""
    space = CS.ConfigurationSpace()
    space.add([
        CS.Float("learning_rate", (1e-4, 1e-1), default=1e-2, log=True),
        CS.Integer("batch_size", (16, 128), default=64, log=True),
        CS.Integer("filters", (8, 64), default=16, log=True),
        CS.Categorical("kernel_size", [3, 5], default=3),
        CS.Constant("conv_layers", 2),
        CS.Constant("units", 128),
        CS.Constant("optimizer", "sgd"),
    ])  # fmt: skip
    return space


def lenet5_space(input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """The one-at-a-time MNIST/CIFAR-10 study around LeNet-5 (conv 20 and 50 filters 5x5, pool 2, FC 500)."""
    space = CS.ConfigurationSpace()
    conv_layers = CS.Integer("conv_layers", (1, MAX_CONV_LAYERS), default=2)
    space.add([
        CS.Integer("batch_size", (16, 256), default=64, log=True),
        CS.Categorical("optimizer", list(OPTIMIZERS), default="sgd"),
        CS.Float("learning_rate", (1e-4, 1e-1), default=1e-2, log=True),
        CS.Categorical("init", list(INITS), default="xavier"),
        CS.Categorical("activation", list(ACTIVATIONS), default="relu"),
        CS.Categorical("kernel_size", [1, 3, 5, 7], default=5),
        CS.Categorical("stride", [1, 2], default=1),
        CS.Categorical("pooling", ["max", "avg", "none"], default="max"),
        conv_layers,
        CS.Constant("units", 500),
    ])  # fmt: skip
    _add_per_layer(space, "filters", conv_layers, MAX_CONV_LAYERS, bounds=(4, 128), default=(20, 50, 50))
    return space


def fashion_cnn_space(input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """The Fashion-MNIST study: 1-3 conv layers, 2-4 linear layers in all, channel pairs, Adam."""
    space = CS.ConfigurationSpace()
    conv_layers = CS.Integer("conv_layers", (1, MAX_CONV_LAYERS), default=2)
    # "16/32": the first conv layer has 16 filters, the others 32.
    space.add([
        conv_layers,
        CS.Categorical("channel_pair", ["16/32", "32/64", "64/128"], default="32/64"),
        # Hidden layers; the output layer makes 2-4 linear layers in all.
        CS.Integer("linear_layers", (1, 3), default=1),
        CS.Integer("units", (32, 512), default=128, log=True),
        CS.Categorical("learning_rate", [1e-2, 5e-3, 1e-3, 5e-4], default=1e-3),
        CS.Integer("batch_size", (32, 256), default=64, log=True),
        CS.Float("dropout", (0.0, 0.5), default=0.0),
        CS.Constant("optimizer", "adam"),
    ])  # fmt: skip
    return space


def mlp_bn_space(input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """The CIFAR-10 study: a k-layer MLP (3-9 layers) with batch norm, dropout, L2 and AdaGrad, cyclic lr."""
    space = CS.ConfigurationSpace()
    space.add([
        CS.Constant("conv_layers", 0),
        CS.Integer("linear_layers", (3, 9), default=3),
        CS.Integer("units", (64, 1024), default=256, log=True),
        CS.Constant("batch_norm", True),
        CS.Float("dropout", (0.0, 0.5), default=0.2),
        CS.Float("weight_decay", (1e-6, 1e-2), default=1e-4, log=True),
        CS.Constant("optimizer", "adagrad"),
        CS.Float("learning_rate", (1e-3, 1.0), default=0.05, log=True),
        CS.Constant("lr_schedule", "cyclic"),
        CS.Integer("cycle_epochs", (2, 10), default=4),
        CS.Integer("batch_size", (32, 512), default=128, log=True),
    ])  # fmt: skip
    return space


def full_space(input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """Every knob of ``docs/hyperparameters.md``, each parameter active only where it applies."""
    space = CS.ConfigurationSpace()
    conv_layers = CS.Integer("conv_layers", (0, MAX_CONV_LAYERS), default=2)
    conv_knobs = [
        CS.Categorical("kernel_size", [1, 3, 5, 7], default=3),
        CS.Categorical("stride", [1, 2], default=1),
        CS.Categorical("padding", ["same", "valid"], default="same"),
        CS.Categorical("pooling", ["max", "avg", "none"], default="max"),
    ]
    linear_layers = CS.Integer("linear_layers", (1, FULL_LINEAR_LAYERS), default=1)
    space.add([
        conv_layers, *conv_knobs, linear_layers,
        CS.Categorical("activation", list(ACTIVATIONS), default="relu"),
        CS.Categorical("batch_norm", [False, True], default=False),
        CS.Float("dropout", (0.0, 0.5), default=0.0),
        CS.Categorical("init", list(INITS), default="default"),
        CS.Float("learning_rate", (1e-5, 0.5), default=1e-2, log=True),
        CS.Integer("batch_size", (16, 512), default=64, log=True),
        CS.Categorical("augmentation", _augmentations(input_shape), default="none"),
    ])  # fmt: skip
    # Only a conv stack has kernels, strides, padding and pooling.
    space.add([CS.GreaterThanCondition(knob, conv_layers, 0) for knob in conv_knobs])
    _add_per_layer(space, "filters", conv_layers, MAX_CONV_LAYERS, bounds=(4, 128), default=16)
    _add_per_layer(space, "units", linear_layers, FULL_LINEAR_LAYERS, bounds=(16, 1024), default=128)
    _add_training_knobs(space)
    return space


def _add_training_knobs(space: CS.ConfigurationSpace) -> None:
    """Optimizer with its own parameters, weight decay (log, or off), learning-rate schedule."""
    optimizer = CS.Categorical("optimizer", list(OPTIMIZERS), default="sgd")
    momentum = CS.Float("momentum", (0.5, 0.99), default=0.9)
    beta1 = CS.Float("beta1", (0.5, 0.99), default=0.9)
    beta2 = CS.Float("beta2", (0.9, 0.9999), default=0.999, log=True)
    alpha = CS.Float("alpha", (0.9, 0.999), default=0.99)
    # A log range cannot hold zero: a switch turns weight decay off, and the log range applies when it is on.
    use_weight_decay = CS.Categorical("use_weight_decay", [False, True], default=False)
    weight_decay = CS.Float("weight_decay", (1e-6, 1e-2), default=1e-4, log=True)
    schedule = CS.Categorical("lr_schedule", list(SCHEDULES), default="constant")
    step_gamma = CS.Float("step_gamma", (0.05, 0.5), default=0.1, log=True)
    cycle_epochs = CS.Integer("cycle_epochs", (2, 10), default=4)
    space.add([optimizer, momentum, beta1, beta2, alpha, use_weight_decay, weight_decay, schedule, step_gamma,
               cycle_epochs])  # fmt: skip
    space.add([
        CS.InCondition(momentum, optimizer, ["momentum", "nesterov"]),
        CS.InCondition(beta1, optimizer, ["adam", "adamw"]),
        CS.InCondition(beta2, optimizer, ["adam", "adamw"]),
        CS.EqualsCondition(alpha, optimizer, "rmsprop"),
        CS.EqualsCondition(weight_decay, use_weight_decay, True),
        CS.EqualsCondition(step_gamma, schedule, "step"),
        CS.EqualsCondition(cycle_epochs, schedule, "cyclic"),
    ])  # fmt: skip


def _add_per_layer(
    space: CS.ConfigurationSpace,
    prefix: str,
    layers: CS.UniformIntegerHyperparameter,
    maximum: int,
    *,
    bounds: tuple[int, int],
    default: int | tuple[int, ...],
) -> None:
    """``prefix_1 .. prefix_maximum`` (log scale), ``prefix_k`` active only with at least k layers."""
    defaults = default if isinstance(default, tuple) else (default,) * maximum
    per_layer = [
        CS.Integer(f"{prefix}_{index}", bounds, default=defaults[index - 1], log=True)
        for index in range(1, maximum + 1)
    ]
    space.add(per_layer)
    lowest = int(layers.lower)
    space.add([
        CS.GreaterThanCondition(parameter, layers, index - 1)
        for index, parameter in enumerate(per_layer, start=1)
        if index > lowest
    ])  # fmt: skip


def _augmentations(input_shape: InputShape) -> list[str]:
    # Flips and crops suit natural images (CIFAR-10); digits get small affine jitter (a flipped 2 is no 2).
    if input_shape is None:
        return ["none", "crop_flip", "affine"]
    return ["none", "crop_flip"] if input_shape[0] == 3 else ["none", "affine"]


PRESETS: dict[str, Callable[[InputShape], CS.ConfigurationSpace]] = {
    "default": default_space,
    "lenet-small": lenet_small_space,
    "lenet5": lenet5_space,
    "fashion-cnn": fashion_cnn_space,
    "mlp-bn": mlp_bn_space,
    "full": full_space,
}
