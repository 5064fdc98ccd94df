"""The values the workers understand for each categorical hyperparameter (``docs/hyperparameters.md``).

One list each, shared by the search spaces (which offer them) and the workers (which validate them), so a
preset cannot offer a value the workers refuse. Plain constants: importing this costs nothing.
"""

from __future__ import annotations

ACTIVATIONS = ("relu", "elu", "leaky_relu", "tanh", "softsign", "linear")
INITS = ("default", "kaiming", "xavier", "normal")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop")
SCHEDULES = ("constant", "cosine", "step", "cyclic")
AUGMENTATIONS = ("none", "crop_flip", "affine")
# The most conv and hidden linear layers the model builder makes (workers.models).
MAX_CONV_LAYERS = 3
MAX_LINEAR_LAYERS = 9

# Every configuration key the workers read (docs/hyperparameters.md): a space file naming anything else has a
# typo, which the workers would silently ignore (the key then takes its default in every job).
ARCHITECTURE_KEYS = (
    "conv_layers", "filters", *(f"filters_{i}" for i in range(1, MAX_CONV_LAYERS + 1)), "kernel_size",
    "stride", "padding", "pooling", "activation", "batch_norm", "linear_layers", "units", "fc_units",
    *(f"units_{i}" for i in range(1, MAX_LINEAR_LAYERS + 1)), "dropout", "init", "channel_pair",
)  # fmt: skip
TRAINING_KEYS = (
    "learning_rate", "batch_size", "optimizer", "momentum", "beta1", "beta2", "alpha", "weight_decay",
    "lr_schedule", "step_gamma", "cycle_epochs", "augmentation", "seed",
)  # fmt: skip
# Switches that only activate other hyperparameters through conditions (the full preset's weight decay).
SWITCH_KEYS = ("use_weight_decay",)
HYPERPARAMETER_NAMES = frozenset(ARCHITECTURE_KEYS + TRAINING_KEYS + SWITCH_KEYS)

# Short names people use for the hyperparameters (``--vary lr=...``, ``analysis curves --by lr``); each
# stands for its target only where the space has no hyperparameter of the short name itself. One table for
# the study options (hpo_service.sweeps) and analysis, which may import this module (constants only).
ALIASES = {
    "lr": "learning_rate",
    "bs": "batch_size",
    "batch": "batch_size",
    "opt": "optimizer",
    "kernel": "kernel_size",
    "filters": "filters_1",
    "filter_size": "kernel_size",
    "layers": "conv_layers",
    "units": "fc_units",
}
