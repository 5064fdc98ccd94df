"""One training step (forward, loss, backward, update), and the eager way of running each step of an epoch.

:class:`Steps` is what the trainer's epoch loop calls per batch; :class:`EagerSteps` launches every
operation from Python, :class:`workers.graph_step.GraphSteps` replays a captured CUDA graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn import functional

Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


class Steps(Protocol):
    """Runs the training steps of a run: ``mode`` names how (``eager`` or ``graph``)."""

    mode: str
    optimizer: torch.optim.Optimizer

    def run(self, batch: torch.Tensor, labels: torch.Tensor, rate: float | None) -> torch.Tensor:
        """One step on ``batch`` at learning rate ``rate`` (None: keep the current one); the loss, on the
        device, valid until the next call."""
        ...


@dataclass
class EagerSteps:
    """Each step launched operation by operation from Python: any shape, any precision, a gradient scaler."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    autocast: Autocast = contextlib.nullcontext
    grad_scaler: torch.amp.GradScaler | None = None
    mode: str = "eager"

    def run(self, batch: torch.Tensor, labels: torch.Tensor, rate: float | None) -> torch.Tensor:
        if rate is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        return training_step(
            self.model, self.optimizer, batch, labels, autocast=self.autocast, grad_scaler=self.grad_scaler
        )


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    labels: torch.Tensor,
    *,
    autocast: Autocast,
    grad_scaler: torch.amp.GradScaler | None,
) -> torch.Tensor:
    """One forward pass (under ``autocast``), backward pass and update; returns the loss on the device."""
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        loss = functional.cross_entropy(model(batch), labels)
    if grad_scaler is None:
        loss.backward()
        optimizer.step()
    else:
        # Steps whose scaled gradients overflowed are skipped and the scale lowered, as fp16 needs.
        grad_scaler.scale(loss).backward()
        grad_scaler.step(optimizer)
        grad_scaler.update()
    return loss
