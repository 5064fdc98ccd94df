"""The training hyperparameters of a configuration (the "Training" table of ``docs/hyperparameters.md``).

:class:`TrainingSpec` reads them from a configuration (absent keys take the defaults, numpy scalars and
builtins alike), validates them (:class:`TrainingConfigError` names the key, the value and the choices) and
builds the optimizer and the learning rate of each step from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpo_service.vocabulary import AUGMENTATIONS, OPTIMIZERS, SCHEDULES
from workers.models import ConfigurationError, read_float, read_int
from workers.schedules import learning_rate_factor

# Optimizers whose momentum is the point: a configuration without a momentum key gets this one.
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")
DEFAULT_MOMENTUM = 0.9


class TrainingConfigError(ConfigurationError):
    """The training hyperparameters of a configuration are invalid (e.g. an unknown optimizer)."""


@dataclass(frozen=True)
class TrainingSpec:
    """The training hyperparameters of one configuration, validated (``docs/hyperparameters.md``)."""

    learning_rate: float = 0.01
    batch_size: int = 64
    optimizer: str = "sgd"
    # None: the optimizer's default (0.9 for momentum / nesterov, else 0), which __post_init__ puts in its
    # place. Used by the SGD family and RMSprop; the Adam family and Adagrad ignore it.
    momentum: float | None = None
    beta1: float = 0.9
    beta2: float = 0.999
    alpha: float = 0.99
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    step_gamma: float = 0.1
    cycle_epochs: float = 4.0
    augmentation: str = "none"

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        _check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        if self.momentum is None:
            default = DEFAULT_MOMENTUM if self.optimizer in MOMENTUM_OPTIMIZERS else 0.0
            object.__setattr__(self, "momentum", default)
        if self.learning_rate <= 0:
            raise TrainingConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1:
            raise TrainingConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        for key in ("momentum", "beta1", "beta2", "alpha"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise TrainingConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if self.optimizer == "nesterov" and self.momentum == 0.0:
            raise TrainingConfigError("momentum must be positive for optimizer 'nesterov', got 0.0")
        if self.weight_decay < 0:
            raise TrainingConfigError(f"weight_decay must not be negative, got {self.weight_decay}")
        if not 0.0 < self.step_gamma <= 1.0:
            raise TrainingConfigError(f"step_gamma must be in (0, 1], got {self.step_gamma}")
        if self.cycle_epochs <= 0:
            raise TrainingConfigError(f"cycle_epochs must be positive, got {self.cycle_epochs}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainingSpec:
        """The spec of a configuration; absent keys take the defaults, keys it does not know are ignored."""
        defaults = cls()

        def number(key: str) -> float:
            return read_float(config, key, getattr(defaults, key), TrainingConfigError)

        def choice(key: str) -> str:
            return str(config.get(key, getattr(defaults, key))).lower()

        return cls(
            learning_rate=number("learning_rate"),
            batch_size=read_int(config, "batch_size", defaults.batch_size, TrainingConfigError),
            optimizer=choice("optimizer"),
            momentum=number("momentum") if "momentum" in config else None,
            beta1=number("beta1"),
            beta2=number("beta2"),
            alpha=number("alpha"),
            weight_decay=number("weight_decay"),
            lr_schedule=choice("lr_schedule"),
            step_gamma=number("step_gamma"),
            cycle_epochs=number("cycle_epochs"),
            augmentation=choice("augmentation"),
        )

    def make_optimizer(
        self, parameters: Iterable[nn.Parameter], *, graph_rate: torch.Tensor | None = None
    ) -> torch.optim.Optimizer:
        """The optimizer at the peak learning rate; weight decay is L2 in the gradient except for AdamW.

        With ``graph_rate`` (a one-element float32 tensor on the parameters' CUDA device) the optimizer
        reads its learning rate from that tensor and its step can be captured in a CUDA graph: a Python
        float would be baked into the graph, and the default implementations read their step counters and
        rates on the host. Adam, AdamW and RMSprop take ``capturable=True``; SGD has no such flag, but its
        fused CUDA kernel reads the rate on the device. Adagrad's multi-tensor implementation computes
        with a tensor rate on the device too (its fused kernel refuses CUDA parameters in torch 2.11, takes
        them in 2.14). Adagrad's step counter stays on the host, where a replay does not advance it: only
        ``lr_decay`` reads it, and it is always 0 here.
        """
        rate: float | torch.Tensor = self.learning_rate if graph_rate is None else graph_rate
        decay = self.weight_decay
        momentum = self.momentum or 0.0  # never None after __post_init__
        fused: dict[str, Any] = {} if graph_rate is None else {"fused": True}
        capturable: dict[str, Any] = {} if graph_rate is None else {"capturable": True}
        foreach: dict[str, Any] = {} if graph_rate is None else {"foreach": True}
        if self.optimizer in ("sgd", "momentum", "nesterov"):
            nesterov = self.optimizer == "nesterov"
            return torch.optim.SGD(
                parameters, lr=rate, momentum=momentum, nesterov=nesterov, weight_decay=decay, **fused
            )
        if self.optimizer in ("adam", "adamw"):
            kind = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
            betas = (self.beta1, self.beta2)
            return kind(parameters, lr=rate, betas=betas, weight_decay=decay, **capturable)
        if self.optimizer == "adagrad":
            return torch.optim.Adagrad(parameters, lr=rate, weight_decay=decay, **foreach)
        return torch.optim.RMSprop(
            parameters, lr=rate, alpha=self.alpha, momentum=momentum, weight_decay=decay, **capturable
        )

    def learning_rate_at(self, step: int, steps_per_epoch: int, horizon_epochs: int) -> float:
        """The learning rate of optimizer step ``step`` (0 first) under this spec's schedule."""
        factor = learning_rate_factor(
            self.lr_schedule, step, steps_per_epoch, horizon_epochs,
            step_gamma=self.step_gamma, cycle_epochs=self.cycle_epochs,
        )  # fmt: skip
        return self.learning_rate * factor


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise TrainingConfigError(f"unknown {key} {value!r}: choose one of {', '.join(choices)}")
