"""Data augmentation of training batches as tensor operations on the batch's device.

Each function transforms a whole ``N x C x H x W`` batch at once (random parameters per image, no Python
loop over the images) and keeps the batch's shape, dtype and memory format (channels-last batches stay
channels-last). The randomness comes from a ``torch.Generator`` the caller seeds, so the same seed gives the
same augmented batches on CPU. Pixels moved in from outside the image are zeros: the data is normalised to a
zero mean, so they are the (per-channel) mean colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional

from hpo_service.vocabulary import AUGMENTATIONS

# The padding of crop_flip for large images (the usual CIFAR recipe); smaller images get an eighth of their
# size (3 for 28x28, 1 for 8x8) so that a crop never loses more than about a quarter of the image.
MAX_CROP_PADDING = 4
AFFINE_DEGREES = 10.0
AFFINE_TRANSLATE = 0.1
AFFINE_SCALE = (0.9, 1.1)

Augmenter = Callable[[torch.Tensor], torch.Tensor]


def augmenter(kind: str, generator: torch.Generator) -> Augmenter | None:
    """The augmentation ``kind`` (one of :data:`AUGMENTATIONS`) drawing from ``generator``; None for none."""
    if kind == "none":
        return None
    if kind == "crop_flip":
        return lambda batch: crop_flip(batch, generator)
    if kind == "affine":
        return lambda batch: random_affine(batch, generator)
    raise ValueError(f"unknown augmentation {kind!r}: choose one of {', '.join(AUGMENTATIONS)}")


def crop_padding(height: int, width: int) -> int:
    """Zero padding of :func:`crop_flip` for ``height x width`` images."""
    return min(MAX_CROP_PADDING, max(1, min(height, width) // 8))


def crop_flip(
    batch: torch.Tensor,
    generator: torch.Generator,
    *,
    padding: int | None = None,
    flip_probability: float = 0.5,
) -> torch.Tensor:
    """Zero-pad by ``padding`` pixels (default :func:`crop_padding`), crop back to the size at a random offset
    per image, and mirror each image left-right with ``flip_probability``."""
    count, channels, height, width = batch.shape
    pad = crop_padding(height, width) if padding is None else padding
    device = batch.device
    flip = _uniform(generator, (count,), device) < flip_probability
    columns = torch.arange(width, device=device)
    columns = torch.where(flip[:, None], columns.flip(0), columns)
    rows = torch.arange(height, device=device).expand(count, height)
    # Pixels as rows of C channel values (N x H x W x C: a view, no copy, for channels-last batches).
    pixels = batch.permute(0, 2, 3, 1)
    if pad > 0:
        pixels = functional.pad(pixels, (0, 0, pad, pad, pad, pad))
        offsets = torch.randint(0, 2 * pad + 1, (2, count), generator=generator, device=generator.device)
        offsets = offsets.to(device)
        rows = rows + offsets[0, :, None]
        columns = columns + offsets[1, :, None]
    # Crop and flip in one gather of whole pixels by flat index: measured about twice as fast on CPU as
    # advanced indexing with per-image row and column index tensors.
    images = torch.arange(count, device=device)[:, None, None]
    padded_height, padded_width = pixels.shape[1], pixels.shape[2]
    index = (images * padded_height + rows[:, :, None]) * padded_width + columns[:, None, :]
    cropped = pixels.reshape(-1, channels).index_select(0, index.reshape(-1))
    return (
        cropped.view(count, height, width, channels)
        .permute(0, 3, 1, 2)
        .contiguous(memory_format=_memory_format(batch))
    )


def random_affine(
    batch: torch.Tensor,
    generator: torch.Generator,
    *,
    degrees: float = AFFINE_DEGREES,
    translate: float = AFFINE_TRANSLATE,
    scale: tuple[float, float] = AFFINE_SCALE,
) -> torch.Tensor:
    """Rotate by up to ``degrees`` either way, shift by up to ``translate`` of the size in each direction
    and scale by a factor in ``scale``, independently per image (bilinear, zeros outside)."""
    count, _, height, width = batch.shape
    uniform = _uniform(generator, (4, count), batch.device)
    angle = (2.0 * uniform[0] - 1.0) * math.radians(degrees)
    factor = scale[0] + (scale[1] - scale[0]) * uniform[1]
    # Normalised coordinates span 2 per image side, so a shift of a fraction f of the side is 2 f.
    shift_x, shift_y = (2.0 * uniform[2:] - 1.0) * (2.0 * translate)
    # theta maps output to input coordinates: dividing by the factor enlarges the content by it. The aspect
    # ratio terms make the rotation one in pixels, not in normalised units, for non-square images.
    cos, sin = angle.cos() / factor, angle.sin() / factor
    rows = (cos, -sin * (height / width), shift_x, sin * (width / height), cos, shift_y)
    theta = torch.stack(rows, dim=1).to(batch.dtype).view(count, 2, 3)
    grid = sampling_grid(theta, height, width)
    moved = functional.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved.contiguous(memory_format=_memory_format(batch))


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``functional.affine_grid(theta, (N, C, height, width), align_corners=False)`` (N x H x W x 2).

    Computed by broadcasting: measured ~9x faster on CPU than ``affine_grid``, which builds a base grid and
    multiplies it in a batched matmul.
    """
    # Pixel centres in normalised coordinates, as align_corners=False places them.
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    coefficients = theta[:, :, :, None, None]
    grid = coefficients[:, :, 0] * xs + coefficients[:, :, 1] * ys[:, None] + coefficients[:, :, 2]
    return grid.permute(0, 2, 3, 1)


def _uniform(generator: torch.Generator, size: tuple[int, ...], device: torch.device) -> torch.Tensor:
    # Drawn where the generator lives (a CPU generator serves a CUDA batch too), then moved to the batch.
    return torch.rand(size, generator=generator, device=generator.device).to(device)


def _memory_format(batch: torch.Tensor) -> torch.memory_format:
    if not batch.is_contiguous() and batch.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
