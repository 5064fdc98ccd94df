"""Feature-map arithmetic of the CNN, shared by the search space (which forbids collapsing architectures)
and the model builder (which builds them): one definition, so the two cannot disagree.

Each conv layer is a ``kernel_size`` convolution with ``stride`` and ``same`` (``kernel_size // 2`` zeros
on each side) or ``valid`` (none) padding, followed by a 2×2 pooling with stride 2 unless ``pooling`` is
``none``. An architecture *collapses* when a feature map would be smaller than 1×1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The input shape (channels, height, width) of each dataset; the space builder sizes the network from it.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
PADDINGS = ("same", "valid")
POOLINGS = ("max", "avg", "none")
POOL_SIZE = 2


def conv_output_size(size: int, kernel_size: int, stride: int, padding: str) -> int:
    """Output length of a convolution along one axis; 0 when the kernel does not fit."""
    pad = kernel_size // 2 if padding == "same" else 0
    span = size + 2 * pad - kernel_size
    return span // stride + 1 if span >= 0 else 0


def pool_output_size(size: int, pooling: str) -> int:
    return size if pooling == "none" else size // POOL_SIZE


def feature_map_sizes(
    height: int,
    width: int,
    *,
    conv_layers: int,
    kernel_size: int,
    stride: int = 1,
    padding: str = "same",
    pooling: str = "max",
) -> list[tuple[int, int]]:
    """(height, width) after each conv layer (conv, then pooling); stops at the first collapsed map."""
    sizes: list[tuple[int, int]] = []
    for _ in range(conv_layers):
        height, width = (
            pool_output_size(conv_output_size(size, kernel_size, stride, padding), pooling)
            for size in (height, width)
        )
        sizes.append((height, width))
        if min(height, width) < 1:
            break
    return sizes


def collapse_reason(input_shape: tuple[int, int, int], architecture: Mapping[str, Any]) -> str | None:
    """Why the conv stack of ``architecture`` (config keys, defaults as the builder's) collapses, or None."""
    _, height, width = input_shape
    conv_layers = int(architecture.get("conv_layers", 2))
    kernel_size = int(architecture.get("kernel_size", 3))
    stride = int(architecture.get("stride", 1))
    padding = str(architecture.get("padding", "same"))
    pooling = str(architecture.get("pooling", "max"))
    sizes = feature_map_sizes(
        height, width, conv_layers=conv_layers, kernel_size=kernel_size, stride=stride, padding=padding,
        pooling=pooling,
    )  # fmt: skip
    for layer, (out_height, out_width) in enumerate(sizes, start=1):
        if min(out_height, out_width) < 1:
            return (
                f"the feature map collapses below 1x1 after conv layer {layer} of {conv_layers} "
                f"(input {height}x{width}, kernel {kernel_size}, stride {stride}, {padding} padding, "
                f"{pooling} pooling)"
            )
    return None
