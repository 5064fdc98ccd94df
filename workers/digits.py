"""scikit-learn's 8x8 digits and its stratified splits, without importing scikit-learn.

Importing scikit-learn costs a worker 1.2-1.4 s of CPU (measured on the 2-core development machine), and
every worker of a run pays it at once when it starts: with four workers on two cores that alone held the
first job back by about 2 s. The digits ship as a CSV file in scikit-learn's package data, which numpy
reads in milliseconds; the split reproduces ``train_test_split(..., stratify=labels, random_state=seed)``
exactly (the same images in each split for every seed: ``tests/integration/test_data.py`` compares them), so
runs made before keep their splits and resume unchanged.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from workers.dataset_error import DatasetError

# In scikit-learn's package: 1797 rows of 64 pixel values (0..16) and the label, comma-separated.
DIGITS_FILE = Path("datasets", "data", "digits.csv.gz")


def digits_file() -> Path:
    """Where the installed scikit-learn keeps the digits (found without running its ``__init__``)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DatasetError("the digits dataset ships with scikit-learn, which is not installed")
    path = Path(spec.origin).parent / DIGITS_FILE
    if not path.is_file():
        raise DatasetError(f"the digits dataset is missing from scikit-learn's package ({path})")
    return path


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: float32 ``1797 x 8 x 8`` and int64 labels, as ``load_digits()`` gives them."""
    data = np.loadtxt(digits_file(), delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8).astype(np.float32), data[:, -1].astype(np.int64)


def stratified_holdout(
    labels: np.ndarray, indices: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``indices`` split into (kept, held out), ``fraction`` of them held out, each class in proportion:
    the sets scikit-learn's ``StratifiedShuffleSplit`` draws with ``random_state=seed``, in any order."""
    count = len(indices)
    n_held = math.ceil(fraction * count)
    n_kept = count - n_held
    classes, class_of, class_counts = np.unique(labels[indices], return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or min(n_kept, n_held) < len(classes):
        raise DatasetError(f"a fraction of {fraction} of {count} images leaves a class out of a split")
    members = np.split(np.argsort(class_of, kind="stable"), np.cumsum(class_counts)[:-1])
    random = np.random.RandomState(seed)
    kept_per_class = _approximate_mode(class_counts, n_kept, random)
    held_per_class = _approximate_mode(class_counts - kept_per_class, n_held, random)
    kept: list[int] = []
    held: list[int] = []
    for index in range(len(classes)):
        shuffled = members[index].take(random.permutation(class_counts[index]), mode="clip")
        kept.extend(shuffled[: kept_per_class[index]])
        held.extend(shuffled[kept_per_class[index] : kept_per_class[index] + held_per_class[index]])
    return indices[np.array(kept, dtype=np.int64)], indices[np.array(held, dtype=np.int64)]


def _approximate_mode(class_counts: np.ndarray, draws: int, random: np.random.RandomState) -> np.ndarray:
    """Images per class when ``draws`` are taken in proportion: the floors, then one more for the classes
    with the largest remainders, ties broken at random (scikit-learn's rule and random draws)."""
    continuous = class_counts / class_counts.sum() * draws
    floored = np.floor(continuous)
    missing = int(draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1]:
        if missing <= 0:
            break
        (candidates,) = np.where(remainder == value)
        now = min(len(candidates), missing)
        floored[random.choice(candidates, size=now, replace=False)] += 1
        missing -= now
    return floored.astype(int)
