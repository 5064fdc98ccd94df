"""Datasets: digits splits, MNIST IDX files in every layout users have, and clear errors for broken files."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import workers.data
from tests.conftest import REPO
from workers.data import (
    DATASETS,
    MNIST_FILES,
    DatasetError,
    DatasetTensors,
    load_dataset,
    random_split_indices,
    stratified_split_indices,
)
from workers.digits import load_digits_arrays, stratified_holdout

CPU = torch.device("cpu")
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

# Synthetic MNIST: small non-square images whose every pixel is LABEL_SCALE x their label, so that the
# pairing of images and labels survives splitting and can be checked after normalisation.
HEIGHT, WIDTH = 5, 4
N_TRAIN, N_TEST = 30, 8
LABEL_SCALE = 25


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(f">{1 + array.ndim}i", magic, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_arrays(count: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    labels = (np.arange(count) + offset) % 10
    images = np.broadcast_to((labels * LABEL_SCALE)[:, None, None], (count, HEIGHT, WIDTH))
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(folder: Path, *, compressed: bool, skip: str | None = None) -> dict[str, Path]:
    """The four IDX files in ``folder``, ``.gz`` or raw; ``skip`` leaves one file out."""
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_arrays(N_TRAIN, offset=0)
    test_images, test_labels = synthetic_arrays(N_TEST, offset=3)
    contents = {
        "train_images": idx_bytes(train_images, 2051),
        "train_labels": idx_bytes(train_labels, 2049),
        "test_images": idx_bytes(test_images, 2051),
        "test_labels": idx_bytes(test_labels, 2049),
    }
    paths = {}
    for key, content in contents.items():
        if key == skip:
            continue
        name = MNIST_FILES[key] + (".gz" if compressed else "")
        paths[key] = folder / name
        paths[key].write_bytes(gzip.compress(content) if compressed else content)
    return paths


def assert_images_match_labels(data: DatasetTensors) -> None:
    """Each image is LABEL_SCALE x its label, normalised with the training split's mean and std."""
    raw_train = (data.train_y * LABEL_SCALE).double()
    mean, std = raw_train.mean(), raw_train.std(correction=0)
    for images, labels in [
        (data.train_x, data.train_y),
        (data.validation_x, data.validation_y),
        (data.test_x, data.test_y),
    ]:
        expected = ((labels * LABEL_SCALE).double() - mean) / std
        assert torch.allclose(images.double(), expected[:, None, None, None].expand_as(images), atol=1e-4)


@pytest.fixture(scope="module")
def digits() -> DatasetTensors:
    return load_dataset("digits", None, CPU)


def test_digits_shapes_types_and_60_20_20_split(digits: DatasetTensors) -> None:
    sizes = len(digits.train_y), len(digits.validation_y), len(digits.test_y)

    assert sum(sizes) == 1797
    assert sizes == (1077, 360, 360)
    assert digits.input_shape == (1, 8, 8)
    assert digits.n_classes == 10
    assert digits.name == "digits"
    for images, labels in [
        (digits.train_x, digits.train_y),
        (digits.validation_x, digits.validation_y),
        (digits.test_x, digits.test_y),
    ]:
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape == (len(labels), 1, 8, 8)
        assert images.device == CPU and labels.device == CPU
        # Stratified: every class in every split.
        assert set(labels.tolist()) == set(range(10))


def test_digits_are_normalised_with_the_training_split(digits: DatasetTensors) -> None:
    assert abs(digits.train_x.mean().item()) < 1e-5
    assert digits.train_x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_digits_load_is_deterministic_and_the_seed_changes_the_split(digits: DatasetTensors) -> None:
    again = load_dataset("digits", None, CPU)
    other = load_dataset("digits", None, CPU, seed=1)

    assert torch.equal(again.train_x, digits.train_x) and torch.equal(again.validation_y, digits.validation_y)
    assert not torch.equal(other.validation_x, digits.validation_x)


def test_stratified_split_is_disjoint_covering_and_deterministic() -> None:
    labels = np.arange(1797) % 10

    train, validation, test = stratified_split_indices(labels, 0.2, 0.25, seed=0)

    combined = np.concatenate([train, validation, test])
    assert len(combined) == len(set(combined.tolist())) == 1797
    assert all(np.array_equal(np.sort(part), part) for part in (train, validation, test))
    again = stratified_split_indices(labels, 0.2, 0.25, seed=0)
    assert all(
        np.array_equal(first, second) for first, second in zip((train, validation, test), again, strict=True)
    )


def test_random_split_is_disjoint_covering_and_deterministic() -> None:
    train, validation = random_split_indices(60_000, 1 / 6, seed=0)

    assert len(validation) == 10_000 and len(train) == 50_000
    assert len(set(train.tolist()) | set(validation.tolist())) == 60_000
    assert np.array_equal(random_split_indices(60_000, 1 / 6, seed=0)[1], validation)
    assert not np.array_equal(random_split_indices(60_000, 1 / 6, seed=1)[1], validation)


def test_train_limit_keeps_the_first_training_images(digits: DatasetTensors) -> None:
    limited = load_dataset("digits", None, CPU, train_limit=100)

    assert len(limited.train_y) == 100
    assert torch.equal(limited.train_x, digits.train_x[:100])
    assert torch.equal(limited.validation_x, digits.validation_x)


def test_unknown_dataset_names_the_choices() -> None:
    with pytest.raises(DatasetError, match="cifar.*digits, mnist"):
        load_dataset("cifar", None, CPU)
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_validation_fraction_outside_0_1_is_an_error(fraction: float) -> None:
    with pytest.raises(DatasetError, match="validation_fraction"):
        load_dataset("digits", None, CPU, validation_fraction=fraction)


def test_train_limit_below_one_is_an_error() -> None:
    with pytest.raises(DatasetError, match="train_limit"):
        load_dataset("digits", None, CPU, train_limit=0)


@pytest.mark.parametrize("layout", ["MNIST/raw", "."])
@pytest.mark.parametrize("compressed", [True, False])
def test_synthetic_mnist_loads_from_every_layout(tmp_path: Path, layout: str, compressed: bool) -> None:
    write_mnist(tmp_path / layout, compressed=compressed)

    data = load_dataset("mnist", tmp_path, CPU)

    # 1/6 of the 30 training images validate; the test set is the t10k files, in their order.
    assert (len(data.train_y), len(data.validation_y), len(data.test_y)) == (25, 5, 8)
    assert data.input_shape == (1, HEIGHT, WIDTH)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.n_classes == 10 and data.name == "mnist"
    assert data.test_y.tolist() == [(index + 3) % 10 for index in range(N_TEST)]
    all_training_labels = sorted(data.train_y.tolist() + data.validation_y.tolist())
    assert all_training_labels == sorted(index % 10 for index in range(N_TRAIN))
    assert_images_match_labels(data)


def test_synthetic_mnist_split_follows_the_seed_and_fraction(tmp_path: Path) -> None:
    write_mnist(tmp_path, compressed=True)

    first = load_dataset("mnist", tmp_path, CPU, seed=0, validation_fraction=0.5)
    again = load_dataset("mnist", tmp_path, CPU, seed=0, validation_fraction=0.5)

    assert len(first.validation_y) == 15
    assert torch.equal(first.validation_x, again.validation_x)


def test_mnist_without_a_data_dir_is_an_error() -> None:
    with pytest.raises(DatasetError, match="data directory"):
        load_dataset("mnist", None, CPU)


def test_missing_mnist_names_the_file_and_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as raised:
        load_dataset("mnist", tmp_path, CPU)

    message = str(raised.value)
    assert "train-images-idx3-ubyte" in message
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "train-images-idx3-ubyte") in message
    assert "download" in message


def test_one_missing_mnist_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw", compressed=True, skip="test_labels")

    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte not found"):
        load_dataset("mnist", tmp_path, CPU)


def test_download_fetches_missing_files_then_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []

    def fake_download(data_dir: Path) -> None:
        # Stands in for torchvision, which writes the raw files into data_dir/MNIST/raw.
        calls.append(data_dir)
        write_mnist(data_dir / "MNIST" / "raw", compressed=False)

    monkeypatch.setattr(workers.data, "download_mnist", fake_download)

    data = load_dataset("mnist", tmp_path, CPU, download=True)

    assert calls == [tmp_path]
    assert len(data.test_y) == N_TEST


@pytest.mark.parametrize("compressed", [True, False])
def test_truncated_file_is_named(tmp_path: Path, compressed: bool) -> None:
    paths = write_mnist(tmp_path, compressed=False)
    content = paths["train_images"].read_bytes()[:-7]
    broken = paths["train_images"]
    if compressed:
        paths["train_images"].unlink()
        broken = tmp_path / (MNIST_FILES["train_images"] + ".gz")
        # A download cut short: the gzip stream itself ends early.
        content = gzip.compress(content)[:-20]
    broken.write_bytes(content)

    with pytest.raises(DatasetError, match=str(broken)):
        load_dataset("mnist", tmp_path, CPU)


def test_corrupt_gzip_is_named(tmp_path: Path) -> None:
    paths = write_mnist(tmp_path, compressed=True)
    content = bytearray(paths["test_images"].read_bytes())
    content[20:40] = b"\xff" * 20
    paths["test_images"].write_bytes(bytes(content))

    with pytest.raises(DatasetError, match=f"cannot read {paths['test_images']}"):
        load_dataset("mnist", tmp_path, CPU)


def test_truncated_header_is_named(tmp_path: Path) -> None:
    paths = write_mnist(tmp_path, compressed=False)
    paths["test_labels"].write_bytes(paths["test_labels"].read_bytes()[:5])

    with pytest.raises(DatasetError, match=f"{paths['test_labels']} is truncated"):
        load_dataset("mnist", tmp_path, CPU)


def test_wrong_magic_number_is_named(tmp_path: Path) -> None:
    paths = write_mnist(tmp_path, compressed=True)
    # An images file where the labels should be.
    paths["train_labels"].write_bytes(paths["train_images"].read_bytes())

    with pytest.raises(DatasetError, match=f"{paths['train_labels']}.*magic number 2051"):
        load_dataset("mnist", tmp_path, CPU)


def test_mismatched_image_and_label_counts_are_named(tmp_path: Path) -> None:
    paths = write_mnist(tmp_path, compressed=False)
    _, labels = synthetic_arrays(N_TRAIN - 1, offset=0)
    paths["train_labels"].write_bytes(idx_bytes(labels, 2049))

    with pytest.raises(DatasetError, match="30 images.*29 labels"):
        load_dataset("mnist", tmp_path, CPU)


def test_label_out_of_range_is_named(tmp_path: Path) -> None:
    paths = write_mnist(tmp_path, compressed=False)
    paths["test_labels"].write_bytes(idx_bytes(np.full(N_TEST, 12), 2049))

    with pytest.raises(DatasetError, match=f"{paths['test_labels']} holds label 12"):
        load_dataset("mnist", tmp_path, CPU)


def test_real_mnist_when_present() -> None:
    if (
        not (SHARED_DATA / "MNIST" / "raw").is_dir()
        and not (SHARED_DATA / "train-images-idx3-ubyte.gz").exists()
    ):
        pytest.skip(f"no MNIST files under {SHARED_DATA}")

    data = load_dataset("mnist", SHARED_DATA, CPU)

    assert (len(data.train_y), len(data.validation_y), len(data.test_y)) == (50_000, 10_000, 10_000)
    assert data.input_shape == (1, 28, 28)
    for labels in (data.train_y, data.validation_y, data.test_y):
        assert labels.min().item() == 0 and labels.max().item() == 9
        assert len(labels.unique()) == 10
    assert abs(data.train_x.mean().item()) < 1e-4
    assert data.train_x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_digits_are_read_as_scikit_learn_loads_them_without_importing_it() -> None:
    from sklearn.datasets import load_digits

    images, labels = load_digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images.astype(np.float32))
    assert np.array_equal(labels, reference.target)
    probe = "import sys, workers.data as data; data.load_dataset('digits', None, 'cpu'); "
    probe += "print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert "sklearn" not in loaded.stdout


@pytest.mark.parametrize("fraction", [0.2, 0.25, 1 / 6, 0.5, 0.013])
def test_stratified_split_takes_the_images_scikit_learn_takes(fraction: float) -> None:
    """Runs made with scikit-learn's split keep their validation and test images (and so resume the same)."""
    from sklearn.model_selection import train_test_split

    _, digits_labels = load_digits_arrays()
    skewed = np.repeat(np.arange(7), [3, 5, 8, 13, 40, 41, 90])  # remainders that tie and that differ
    for labels in (digits_labels, skewed):
        indices = np.random.RandomState(99).permutation(len(labels))  # as the pool of the second split
        for seed in range(12):
            try:
                expected = train_test_split(
                    indices, test_size=fraction, stratify=labels[indices], random_state=seed
                )
            except ValueError:  # a class too small for this fraction: ours refuses too
                with pytest.raises(DatasetError):
                    stratified_holdout(labels, indices, fraction, seed)
                continue
            kept, held = stratified_holdout(labels, indices, fraction, seed)
            assert np.array_equal(np.sort(kept), np.sort(expected[0])), (fraction, seed)
            assert np.array_equal(np.sort(held), np.sort(expected[1])), (fraction, seed)
