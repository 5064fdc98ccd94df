"""Issue 3's guarantee: every configuration the ``full`` space can sample builds and trains for its input.

1,000 configurations per dataset shape go through the model builder and one forward and backward pass; the
forbidden clauses must have removed every architecture that collapses or cannot be built.
"""

from __future__ import annotations

import pytest
import torch

from hpo_service.space import build_space
from hpo_service.wire import to_builtins
from workers.models import build_model
from workers.training_spec import TrainingSpec

SAMPLES_PER_SHAPE = 1000
N_CLASSES = 10


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)], ids=["8x8", "28x28", "32x32"])
def test_a_thousand_full_configurations_build_and_backpropagate(input_shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    space = build_space("full", input_shape, seed=11)
    configs = [to_builtins(dict(config)) for config in space.sample_configuration(SAMPLES_PER_SHAPE)]
    # Two images: batch norm needs more than one value per channel in training mode.
    inputs = torch.randn(2, *input_shape)
    depths = set()
    for config in configs:
        model = build_model(config, input_shape, N_CLASSES)
        model.train()
        # The training knobs are valid too: the optimizer builds and takes a step.
        optimizer = TrainingSpec.from_config(config).make_optimizer(model.parameters())
        logits = model(inputs)
        logits.sum().backward()
        optimizer.step()
        assert logits.shape == (2, N_CLASSES)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), config
        depths.add((config["conv_layers"], config["linear_layers"]))
    # The sample covers the space: MLPs and 1-3 conv layers, with 1-4 hidden layers each.
    assert depths == {(conv, linear) for conv in range(4) for linear in range(1, 5)}
