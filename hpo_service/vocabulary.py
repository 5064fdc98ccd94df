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
