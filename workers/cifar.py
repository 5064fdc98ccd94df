"""CIFAR-10 from its python batches, as users have them, without unpickling arbitrary code.

Layouts, in order: ``DATA_DIR/cifar-10-batches-py/`` (what torchvision and the official archive unpack
to), ``DATA_DIR`` itself, or the official archive ``DATA_DIR/cifar-10-python.tar.gz`` (unpacked next to
it on first use). Each batch is a pickled dict with ``data`` (N x 3072 uint8, channel-major 32x32 planes)
and ``labels``. The batches are pickles, and a pickle can run code; they are read with an unpickler that
builds only numpy arrays and plain containers, so a tampered file fails with a message instead.
"""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from workers.dataset_error import DatasetError

logger = logging.getLogger(__name__)

BATCH_FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)
N_CLASSES = 10

# What a CIFAR batch legitimately references: numpy's array reconstruction (numpy 1 and 2 module names)
# and, in batches re-pickled by Python 3 with protocol 2, the codec call that protocol uses for bytes.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; the old name only warns
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``N x 3 x 32 x 32`` uint8 and labels int64 of one batch file."""
    try:
        content = path.read_bytes()
        # The official batches were written by Python 2: byte strings stay bytes.
        batch = _ArraysOnly(io.BytesIO(content), encoding="bytes").load()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DatasetError(
            f"{path} is not a readable CIFAR-10 batch (truncated or corrupt?): {error}"
        ) from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetError(f"{path} is not a CIFAR-10 batch: it has no 'data' and 'labels' entries")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    pixels = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise DatasetError(
            f"{path}: data has shape {data.shape} and type {data.dtype}, expected N x {pixels} uint8"
        )
    if len(labels) != len(data):
        raise DatasetError(f"{path} holds {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DatasetError(f"{path} holds labels outside 0..{N_CLASSES - 1}")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def batch_folder(data_dir: Path, download: bool) -> Path:
    """The folder that holds the batches; unpacks the official archive or downloads when asked."""
    for folder in (data_dir / BATCH_FOLDER, data_dir):
        if (folder / TEST_BATCH).is_file():
            return folder
    archive = data_dir / ARCHIVE
    if not archive.is_file() and download:
        download_cifar10(data_dir)
    if archive.is_file() and not (data_dir / BATCH_FOLDER / TEST_BATCH).is_file():
        unpack(archive, data_dir)
    if (data_dir / BATCH_FOLDER / TEST_BATCH).is_file():
        return data_dir / BATCH_FOLDER
    looked = f"{data_dir / BATCH_FOLDER}, {data_dir}, {archive}"
    hint = "" if download else " (pass download=True / --download to fetch it)"
    raise DatasetError(f"CIFAR-10 batch {TEST_BATCH} not found; looked in {looked}{hint}")


def unpack(archive: Path, data_dir: Path) -> None:
    logger.info("unpacking %s", archive)
    try:
        with tarfile.open(archive) as bundle:
            # The "data" filter refuses absolute paths, links out of the folder and device files.
            bundle.extractall(data_dir, filter="data")
    except (OSError, tarfile.TarError) as error:
        raise DatasetError(f"cannot unpack {archive}: {error}") from error


def download_cifar10(data_dir: Path) -> None:
    """Fetch CIFAR-10 with torchvision into ``data_dir`` (needs the internet)."""
    from torchvision.datasets import CIFAR10

    logger.info("downloading CIFAR-10 into %s", data_dir)
    try:
        CIFAR10(root=str(data_dir), train=True, download=True)
    except (OSError, RuntimeError) as error:
        raise DatasetError(f"cannot download CIFAR-10 into {data_dir}: {error}") from error


def load_cifar10(
    data_dir: Path, download: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): the five training batches and the test one."""
    folder = batch_folder(data_dir, download)
    missing = [name for name in TRAIN_BATCHES if not (folder / name).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 batch {missing[0]} not found in {folder}")
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    test_images, test_labels = read_batch(folder / TEST_BATCH)
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return train_images, train_labels, test_images, test_labels
