"""Training steps captured once as a CUDA graph and replayed per batch (step mode ``graph``).

An eager step of a small CNN costs ~2 ms of CPU launching ~70 kernels whatever the batch; replaying the
whole step (forward, loss, backward, optimizer update) as one CUDA graph costs 0.2-0.6 ms
(``docs/gpu-facts.md`` in the shared docs). How the graph is made follows torch's "whole network capture":

- static input and label tensors of the run's batch shape; each batch is augmented first, then copied in;
- a few warm-up steps on a side stream before the capture (lazy optimizer state, cuDNN autotuning), whose
  updates are then undone: the model, the optimizer state and the random generators are put back exactly,
  so the run takes the same steps as an eager one;
- the optimizer built to be captured (:meth:`TrainingSpec.make_optimizer` with ``graph_rate``): the
  learning rate lives in a device tensor that the schedule fills before every replay;
- autocast without its weight cache; fp16's gradient scaler decides on the host whether to step, so fp16
  runs eagerly;
- the epoch's last, smaller batch runs eagerly on the same optimizer: the same math, another shape.

Step modes: ``eager`` always launches from Python; ``graph`` and ``auto`` capture on CUDA and run eagerly
elsewhere. Where a graph was wanted but eager runs (not CUDA when ``graph`` was asked, fp16, a capture that
failed) the reason is returned for the outcome; a failed capture is one warning, never a failed job.
"""

from __future__ import annotations

import copy
import functools
import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from workers.checkpoints import load_optimizer_state
from workers.precision import Precision
from workers.settings import STEP_MODES
from workers.steps import Autocast, EagerSteps, Steps, training_step
from workers.training_spec import TrainingSpec

__all__ = ["STEP_MODES", "GraphSteps", "capture_steps", "check_step_mode", "graph_obstacle", "make_steps"]

logger = logging.getLogger(__name__)

# torch's example warms up three steps: enough for lazy state and cuDNN's autotuner to settle.
WARM_UP_STEPS = 3


def check_step_mode(name: str) -> str:
    """``name`` as one of :data:`STEP_MODES`; ValueError for anything else."""
    normalised = name.strip().lower()
    if normalised not in STEP_MODES:
        raise ValueError(f"unknown step mode {name!r}: choose one of {', '.join(STEP_MODES)}")
    return normalised


def graph_obstacle(step_mode: str, device: torch.device, precision: Precision) -> str | None:
    """Why a run in ``step_mode`` on ``device`` trains eagerly without trying a graph: ``""`` where eager
    is simply the plan (``eager``, or ``auto`` off CUDA), a reason where a graph was wanted, None where
    a capture should be tried."""
    mode = check_step_mode(step_mode)
    if mode == "eager" or (mode == "auto" and device.type != "cuda"):
        return ""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, this run is on {device.type}"
    if precision.needs_grad_scaler:
        return f"{precision.name} needs a gradient scaler, whose step cannot be captured in a graph"
    return None


def make_steps(
    step_mode: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    spec: TrainingSpec,
    precision: Precision,
    grad_scaler: torch.amp.GradScaler | None,
    sample: tuple[torch.Tensor, torch.Tensor],
) -> tuple[Steps, str | None]:
    """How this run trains, and why eagerly where a graph was wanted (None otherwise).

    ``optimizer`` is the run's eager optimizer, restored where the run resumes; ``sample`` is a full batch
    of (images in the model's memory format, labels) for the warm-up and the capture. A graph gets its own
    optimizer, loaded with ``optimizer``'s state.
    """
    eager = EagerSteps(model, optimizer, precision.autocast, grad_scaler)
    obstacle = graph_obstacle(step_mode, sample[0].device, precision)
    if obstacle is not None:
        return eager, obstacle or None
    try:
        return capture_steps(model, optimizer, spec=spec, precision=precision, sample=sample), None
    except Exception as error:  # whatever the capture raised, the job trains eagerly instead of failing
        reason = f"graph capture failed: {type(error).__name__}: {_first_line(error)}"
        if sample[0].device.type == "cuda":
            # A capture that failed while ending can leave its side stream current: eager work goes back.
            torch.cuda.set_stream(torch.cuda.default_stream(sample[0].device))
    logger.warning("training eagerly: %s", reason)
    return eager, reason


@dataclass
class GraphSteps:
    """Replays the captured step for batches of the captured shape; other batches step eagerly."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    autocast: Autocast
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_labels: torch.Tensor
    static_loss: torch.Tensor
    # The optimizer's learning rate, read by the graph on the device.
    rate: torch.Tensor
    mode: str = "graph"
    # What ``rate`` holds, so that a constant schedule launches no fill per step (None: not set yet).
    rate_held: float | None = None

    def run(self, batch: torch.Tensor, labels: torch.Tensor, rate: float | None) -> torch.Tensor:
        if rate is not None and rate != self.rate_held:
            self.rate.fill_(rate)
            self.rate_held = rate
        if batch.shape != self.static_input.shape:
            return training_step(
                self.model, self.optimizer, batch, labels, autocast=self.autocast, grad_scaler=None
            )
        self.static_input.copy_(batch)
        self.static_labels.copy_(labels)
        self.graph.replay()
        return self.static_loss


def capture_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    spec: TrainingSpec,
    precision: Precision,
    sample: tuple[torch.Tensor, torch.Tensor],
) -> GraphSteps:
    """Capture one training step of ``model`` on batches shaped like ``sample`` (see the module's notes).

    Whether it succeeds or raises, ``model``'s weights and buffers and the random generators are as they
    were before; ``optimizer`` is only read (the graph's optimizer starts from a copy of its state)."""
    device = sample[0].device
    snapshot = _Snapshot.take(model, device)
    try:
        rate = torch.tensor(spec.learning_rate, dtype=torch.float32, device=device)
        graph_optimizer = spec.make_optimizer(model.parameters(), graph_rate=rate)
        # A copy: loading may share tensors, and the warm-up must not touch the eager optimizer's state
        # (a failed capture trains eagerly on it).
        load_optimizer_state(graph_optimizer, copy.deepcopy(optimizer.state_dict()))
        before = _optimizer_tensors(graph_optimizer)
        static_input, static_labels = sample[0].clone(), sample[1].clone()
        autocast = functools.partial(precision.autocast, cache_enabled=False)
        _warm_up(model, graph_optimizer, static_input, static_labels, autocast)
        graph = torch.cuda.CUDAGraph()
        # Gradients None: the captured backward allocates them from the graph's own memory pool.
        graph_optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_loss = _forward_backward_update(
                model, graph_optimizer, static_input, static_labels, autocast
            )
        _restore_optimizer_tensors(graph_optimizer, before)
        return GraphSteps(
            model, graph_optimizer, autocast, graph, static_input, static_labels, static_loss, rate
        )
    finally:
        # Warm-up and capture ran real updates: undo them, so the run starts where it would eagerly.
        snapshot.restore(model)


def _forward_backward_update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    labels: torch.Tensor,
    autocast: Autocast,
) -> torch.Tensor:
    with autocast():
        loss = nn.functional.cross_entropy(model(batch), labels)
    loss.backward()
    optimizer.step()
    return loss


def _warm_up(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    labels: torch.Tensor,
    autocast: Autocast,
) -> None:
    # On a side stream, as torch's capture notes require, so its work is not mixed into the capture's.
    model.train()
    side = _side_stream(batch.device)
    side.wait_stream(torch.cuda.current_stream(batch.device))
    with torch.cuda.stream(side), warnings.catch_warnings():
        # A capturable optimizer warns when it steps outside a graph: here it must, once per instance.
        warnings.filterwarnings("ignore", message=".*capturable=True.*")
        for _ in range(WARM_UP_STEPS):
            optimizer.zero_grad(set_to_none=True)
            _forward_backward_update(model, optimizer, batch, labels, autocast)
    torch.cuda.current_stream(batch.device).wait_stream(side)


@functools.cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    # One per device for the process: cuBLAS keeps a workspace per stream it ran on.
    return torch.cuda.Stream(device)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[tuple[int, str], torch.Tensor]:
    """Copies of the optimizer's state tensors, by (parameter index, key)."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    return {
        (index, key): value.detach().clone()
        for index, parameter in enumerate(parameters)
        for key, value in optimizer.state.get(parameter, {}).items()
        if isinstance(value, torch.Tensor)
    }


def _restore_optimizer_tensors(
    optimizer: torch.optim.Optimizer, before: dict[tuple[int, str], torch.Tensor]
) -> None:
    """Put the state tensors back in place (the graph holds their addresses). State the warm-up created
    is zeroed: every state of the seven optimizers starts at zero (SGD's momentum buffer starts as the
    first gradient, which a zero buffer times momentum plus that gradient equals)."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    with torch.no_grad():
        for index, parameter in enumerate(parameters):
            for key, value in optimizer.state.get(parameter, {}).items():
                saved = before.get((index, key))
                if saved is not None:
                    value.copy_(saved)
                elif isinstance(value, torch.Tensor):
                    value.zero_()


@dataclass(frozen=True)
class _Snapshot:
    """A model's weights and buffers and the random generators' states, to undo the warm-up's steps."""

    device: torch.device
    tensors: dict[str, torch.Tensor]
    cpu_rng: torch.Tensor
    cuda_rng: torch.Tensor

    @classmethod
    def take(cls, model: nn.Module, device: torch.device) -> _Snapshot:
        tensors = {name: value.detach().clone() for name, value in model.state_dict().items()}
        return cls(device, tensors, torch.get_rng_state(), torch.cuda.get_rng_state(device))

    def restore(self, model: nn.Module) -> None:
        with torch.no_grad():
            for name, value in model.state_dict().items():
                value.copy_(self.tensors[name])  # in place: a graph holds these addresses
        torch.set_rng_state(self.cpu_rng)
        torch.cuda.set_rng_state(self.cuda_rng, self.device)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"
