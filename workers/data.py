"""Datasets as tensors on the worker's device, loaded once per worker process.

A worker trains many configurations on the same data, so the whole dataset is parsed once, normalised
with the training split's per-channel mean and standard deviation and kept on the device; the trainer
then indexes batches straight out of these tensors (no DataLoader, no per-image Python).

Splits (all fixed by ``seed``, so every worker with the same seed scores on the same validation images):

- ``digits``: scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn). It has no test split:
  a stratified 20 % is the test set, and ``validation_fraction`` (default 0.25) of the rest is the
  validation set, i.e. 60 / 20 / 20 % train / validation / test.
- ``mnist`` and ``fashion-mnist``: the IDX files (same format and file names; torchvision's layouts are
  ``MNIST/raw`` and ``FashionMNIST/raw``). The 10,000 ``t10k`` images are the test set;
  ``validation_fraction`` (default 1/6, i.e. 10,000 images) of the 60,000 training images, drawn at random,
  is the validation set, the other 50,000 are the training set.
- ``cifar10``: the python pickle batches (:mod:`workers.cifar`). ``test_batch`` is the test set;
  ``validation_fraction`` (default 0.1, i.e. 5,000 images) of the 50,000 training images validates.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hpo_service.shapes import DATASET_SHAPES
from workers.dataset_error import DatasetError
from workers.digits import load_digits_arrays, stratified_holdout

logger = logging.getLogger(__name__)

DATASETS = tuple(DATASET_SHAPES)

# IDX datasets and their folder in torchvision's layout (DATA_DIR/FOLDER/raw).
IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# Fraction of the labelled training pool (everything but the test set) held out for validation.
DEFAULT_VALIDATION_FRACTION = {"digits": 0.25, "mnist": 1 / 6, "fashion-mnist": 1 / 6, "cifar10": 0.1}
DIGITS_TEST_FRACTION = 0.2

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASSES = 10
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, eq=False)
class DatasetTensors:
    """A dataset split into train / validation / test, as tensors on one device.

    Images are float32 ``N x C x H x W``, normalised with the training split's per-channel mean and standard
    deviation; labels are int64 class indices in ``0 .. n_classes - 1``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    validation_x: torch.Tensor
    validation_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.train_x.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def device(self) -> torch.device:
        return self.train_x.device


@dataclass(frozen=True)
class _RawSplits:
    """Images as ``uint8``/``float`` arrays ``N x C x H x W`` and integer labels, before normalisation."""

    train_x: np.ndarray
    train_y: np.ndarray
    validation_x: np.ndarray
    validation_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_dataset(
    name: str,
    data_dir: Path | None,
    device: torch.device,
    *,
    validation_fraction: float | None = None,
    seed: int = 0,
    download: bool = False,
    train_limit: int | None = None,
) -> DatasetTensors:
    """Load dataset ``name`` (one of :data:`DATASETS`) onto ``device``.

    ``data_dir`` is where the MNIST files are (``data_dir/MNIST/raw/`` or ``data_dir/`` itself, ``.gz`` or
    not); ``digits`` needs none. ``validation_fraction`` is the share of the training pool held out for
    validation (``None``: the dataset's default, see the module docstring); ``seed`` fixes the split.
    ``download`` fetches missing MNIST files with torchvision. ``train_limit`` keeps only the first N
    training images after the split (normalisation still uses the whole training split).
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if validation_fraction is None:
        validation_fraction = DEFAULT_VALIDATION_FRACTION[name]
    if not 0.0 < validation_fraction < 1.0:
        raise DatasetError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    if train_limit is not None and train_limit < 1:
        raise DatasetError(f"train_limit must be at least 1, got {train_limit}")
    if name == "digits":
        splits = _digits_splits(validation_fraction, seed)
    elif name == "cifar10":
        splits = _cifar_splits(data_dir, validation_fraction, seed, download)
    else:
        splits = _mnist_splits(data_dir, validation_fraction, seed, download, name)
    n_classes = 10  # every dataset here has ten classes
    data = _to_tensors(name, splits, n_classes, device, train_limit)
    logger.info(
        "%s: %d train, %d validation, %d test images of shape %s on %s",
        name, len(data.train_y), len(data.validation_y), len(data.test_y), data.input_shape, device,
    )  # fmt: skip
    return data


def _digits_splits(validation_fraction: float, seed: int) -> _RawSplits:
    images, labels = load_digits_arrays()
    images = images[:, np.newaxis, :, :]
    train, validation, test = stratified_split_indices(
        labels, DIGITS_TEST_FRACTION, validation_fraction, seed
    )
    return _RawSplits(
        images[train], labels[train], images[validation], labels[validation], images[test], labels[test]
    )


def stratified_split_indices(
    labels: np.ndarray, test_fraction: float, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, validation, test) indices: ``test_fraction`` of all for test, ``validation_fraction``
    of the rest for validation, each class in its overall proportion (small splits still hold every class).
    """
    pool, test = stratified_holdout(labels, np.arange(len(labels)), test_fraction, seed)
    train, validation = stratified_holdout(labels, pool, validation_fraction, seed)
    # Sorted, so that "the first N training images" (train_limit) is a stable, class-mixed prefix.
    return np.sort(train), np.sort(validation), np.sort(test)


def random_split_indices(count: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices of ``count`` items; a random ``validation_fraction`` validates."""
    n_validation = round(count * validation_fraction)
    if not 0 < n_validation < count:
        raise DatasetError(
            f"validation_fraction {validation_fraction} of {count} images leaves an empty split"
        )
    order = np.random.default_rng(seed).permutation(count)
    # Sorted, so that "the first N training images" (train_limit) follows the files' own order.
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def _cifar_splits(data_dir: Path | None, validation_fraction: float, seed: int, download: bool) -> _RawSplits:
    from workers.cifar import load_cifar10

    if data_dir is None:
        raise DatasetError("the cifar10 dataset needs a data directory (--data-dir) holding its batches")
    train_images, train_labels, test_images, test_labels = load_cifar10(data_dir, download)
    train, validation = random_split_indices(len(train_labels), validation_fraction, seed)
    return _RawSplits(
        train_images[train],
        train_labels[train],
        train_images[validation],
        train_labels[validation],
        test_images,
        test_labels,
    )


def _mnist_splits(
    data_dir: Path | None, validation_fraction: float, seed: int, download: bool, name: str = "mnist"
) -> _RawSplits:
    if data_dir is None:
        raise DatasetError(f"the {name} dataset needs a data directory (--data-dir) holding the IDX files")
    paths = _mnist_paths(data_dir, download, name)
    train_images = read_idx_images(paths["train_images"])
    train_labels = read_idx_labels(paths["train_labels"])
    test_images = read_idx_images(paths["test_images"])
    test_labels = read_idx_labels(paths["test_labels"])
    _check_pair(paths["train_images"], train_images, paths["train_labels"], train_labels)
    _check_pair(paths["test_images"], test_images, paths["test_labels"], test_labels)
    train, validation = random_split_indices(len(train_labels), validation_fraction, seed)
    return _RawSplits(
        train_images[train, np.newaxis],
        train_labels[train],
        train_images[validation, np.newaxis],
        train_labels[validation],
        test_images[:, np.newaxis],
        test_labels,
    )


def mnist_candidates(data_dir: Path, file_name: str, name: str = "mnist") -> list[Path]:
    """Where an IDX file may be, in order: torchvision's ``MNIST/raw`` (``FashionMNIST/raw``) layout, then
    ``data_dir`` itself."""
    candidates = []
    for folder in (data_dir / IDX_FOLDERS[name] / "raw", data_dir):
        candidates += [folder / file_name, folder / f"{file_name}.gz"]
    return candidates


def _find_mnist_files(data_dir: Path, name: str) -> tuple[dict[str, Path], list[str]]:
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, file_name in MNIST_FILES.items():
        path = next(
            (candidate for candidate in mnist_candidates(data_dir, file_name, name) if candidate.is_file()),
            None,
        )
        if path is None:
            missing.append(file_name)
        else:
            found[key] = path
    return found, missing


def _mnist_paths(data_dir: Path, download: bool, name: str = "mnist") -> dict[str, Path]:
    found, missing = _find_mnist_files(data_dir, name)
    if missing and download:
        if name == "mnist":
            download_mnist(data_dir)
        else:
            download_fashion_mnist(data_dir)
        found, missing = _find_mnist_files(data_dir, name)
    if missing:
        looked = ", ".join(str(path) for path in mnist_candidates(data_dir, missing[0], name))
        hint = "" if download else " (pass download=True / --download to fetch it)"
        label = "MNIST" if name == "mnist" else "Fashion-MNIST"
        raise DatasetError(f"{label} file {missing[0]} not found; looked for {looked}{hint}")
    return found


def download_mnist(data_dir: Path) -> None:
    """Fetch MNIST into ``data_dir/MNIST/raw`` with torchvision (needs the internet)."""
    _download_with_torchvision("MNIST", data_dir)


def download_fashion_mnist(data_dir: Path) -> None:
    """Fetch Fashion-MNIST into ``data_dir/FashionMNIST/raw`` with torchvision (needs the internet)."""
    _download_with_torchvision("FashionMNIST", data_dir)


def _download_with_torchvision(class_name: str, data_dir: Path) -> None:
    # Imported here: torchvision is only needed for this path, and its import takes a while.
    import torchvision.datasets

    logger.info("downloading %s into %s", class_name, data_dir)
    try:
        for train in (True, False):
            getattr(torchvision.datasets, class_name)(root=str(data_dir), train=train, download=True)
    except (OSError, RuntimeError) as error:
        raise DatasetError(f"cannot download {class_name} into {data_dir}: {error}") from error


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (told by its magic bytes, not by its name)."""
    try:
        content = path.read_bytes()
        if content[:2] == _GZIP_MAGIC:
            content = gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    return content


def _parse_idx(path: Path, content: bytes, magic: int, n_dimensions: int) -> np.ndarray:
    """An IDX array of unsigned bytes: big-endian int32 magic, int32 dimensions, then the data."""
    header_size = 4 * (1 + n_dimensions)
    if len(content) < header_size:
        raise DatasetError(
            f"{path} is truncated: {len(content)} bytes, shorter than its {header_size}-byte header"
        )
    header = np.frombuffer(content, dtype=">i4", count=1 + n_dimensions)
    if int(header[0]) != magic:
        raise DatasetError(
            f"{path} is not an IDX file of this kind: magic number {int(header[0])}, expected {magic}"
        )
    shape = tuple(int(size) for size in header[1:])
    if any(size < 1 for size in shape):
        raise DatasetError(f"{path} has invalid dimensions {shape}")
    expected = header_size + int(np.prod(shape))
    if len(content) != expected:
        state = "truncated" if len(content) < expected else "longer than its header says"
        raise DatasetError(f"{path} is {state}: {len(content)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx_images(path: Path) -> np.ndarray:
    """Images of an IDX3 file (``.gz`` or raw) as ``uint8`` ``N x H x W``."""
    return _parse_idx(path, _read_bytes(path), IDX_IMAGES_MAGIC, 3)


def read_idx_labels(path: Path) -> np.ndarray:
    """Labels of an IDX1 file (``.gz`` or raw) as int64, checked to lie in ``0 .. 9``."""
    labels = _parse_idx(path, _read_bytes(path), IDX_LABELS_MAGIC, 1).astype(np.int64)
    if labels.max() >= MNIST_CLASSES:
        raise DatasetError(f"{path} holds label {labels.max()}, outside 0..{MNIST_CLASSES - 1}")
    return labels


def _check_pair(images_path: Path, images: np.ndarray, labels_path: Path, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )


def _to_tensors(
    name: str, splits: _RawSplits, n_classes: int, device: torch.device, train_limit: int | None
) -> DatasetTensors:
    """Float tensors normalised with the whole training split's statistics, moved to ``device``."""
    train_x = torch.from_numpy(np.require(splits.train_x, requirements=("C", "W"))).float()
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    # A constant channel would divide by zero; leave its scale alone.
    std = train_x.std(dim=(0, 2, 3), correction=0, keepdim=True).clamp_min(1e-6)

    def normalised(tensor: torch.Tensor) -> torch.Tensor:
        # In place: every tensor here is a fresh float copy, and MNIST's temporaries would cost ~0.3 s.
        return tensor.sub_(mean).div_(std).to(device)

    def images(array: np.ndarray) -> torch.Tensor:
        return normalised(torch.from_numpy(np.require(array, requirements=("C", "W"))).float())

    def labels(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)

    if train_limit is not None:
        # A copy, so the kept images do not hold on to the whole training split's memory.
        train_x = train_x[:train_limit].clone()
    return DatasetTensors(
        name=name,
        train_x=normalised(train_x),
        train_y=labels(splits.train_y[:train_limit]),
        validation_x=images(splits.validation_x),
        validation_y=labels(splits.validation_y),
        test_x=images(splits.test_x),
        test_y=labels(splits.test_y),
        n_classes=n_classes,
    )
