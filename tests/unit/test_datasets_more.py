"""Fashion-MNIST (IDX, its own layout) and CIFAR-10 (python pickle batches), on small synthetic files."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import workers.data
from hpo_service.run_spec import OPTIONS as RUN_OPTIONS
from tests.integration.test_data import N_TEST, N_TRAIN, write_mnist
from workers import cifar
from workers.data import DATASETS, DatasetError, load_dataset

CPU = torch.device("cpu")
BATCH_SIZE = 20  # images per synthetic batch: 100 training images, 20 test images


def test_every_cli_offers_every_dataset() -> None:
    run_choices = next(
        option.choices for option in RUN_OPTIONS if option.flag == "--dataset"
    )  # every launcher
    assert tuple(DATASETS) == tuple(run_choices)


def test_fashion_mnist_reads_its_own_torchvision_layout(tmp_path: Path) -> None:
    write_mnist(tmp_path / "FashionMNIST" / "raw", compressed=True)
    data = load_dataset("fashion-mnist", tmp_path, CPU)
    assert data.name == "fashion-mnist"
    assert len(data.train_y) + len(data.validation_y) == N_TRAIN
    assert len(data.test_y) == N_TEST
    # MNIST's folder is not Fashion-MNIST's: the same files there are not taken for it.
    with pytest.raises(DatasetError, match=r"Fashion-MNIST file train-images-idx3-ubyte not found"):
        load_dataset("fashion-mnist", tmp_path / "FashionMNIST" / "elsewhere", CPU)


def test_fashion_mnist_download_uses_its_own_downloader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []

    def fake_download(data_dir: Path) -> None:
        calls.append(data_dir)
        write_mnist(data_dir / "FashionMNIST" / "raw", compressed=False)

    monkeypatch.setattr(workers.data, "download_fashion_mnist", fake_download)
    monkeypatch.setattr(workers.data, "download_mnist", lambda data_dir: pytest.fail("wrong dataset"))
    data = load_dataset("fashion-mnist", tmp_path, CPU, download=True)
    assert calls == [tmp_path]
    assert len(data.test_y) == N_TEST


def batch(offset: int, count: int = BATCH_SIZE) -> dict[bytes, object]:
    """A batch as the official files hold it: bytes keys, N x 3072 uint8 rows, a list of labels.

    Channel c of an image of label k is filled with 10 * k + c, so the channel-major reshape and the
    pairing of images and labels can both be checked.
    """
    labels = [(offset + index) % 10 for index in range(count)]
    planes = np.array([[[10 * label + channel] * 1024 for channel in range(3)] for label in labels])
    return {
        b"batch_label": b"synthetic",
        b"labels": labels,
        b"data": planes.reshape(count, 3072).astype(np.uint8),
    }


def write_cifar(folder: Path, skip: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate((*cifar.TRAIN_BATCHES, cifar.TEST_BATCH)):
        if name != skip:
            (folder / name).write_bytes(pickle.dumps(batch(index), protocol=2))
    return folder


@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "."])
def test_cifar_batches_load_as_normalised_images_with_their_labels(tmp_path: Path, layout: str) -> None:
    write_cifar(tmp_path / layout)
    data = load_dataset("cifar10", tmp_path, CPU)
    assert data.input_shape == (3, 32, 32)
    assert data.n_classes == 10
    assert len(data.train_y) + len(data.validation_y) == 5 * BATCH_SIZE
    assert len(data.validation_y) == round(5 * BATCH_SIZE * 0.1)
    assert len(data.test_y) == BATCH_SIZE
    # Per-channel normalisation with the training split: each channel's mean is 0.
    assert torch.allclose(data.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    # Images still match their labels after the split: sort by value within channel 0.
    order = torch.argsort(data.test_x[:, 0, 0, 0])
    assert torch.equal(data.test_y[order], torch.sort(data.test_y).values)
    # The rows are channel-major planes: channel c of an image of label k is 10 k + c everywhere.
    images, labels = cifar.read_batch(tmp_path / layout / cifar.TEST_BATCH)
    expected = 10 * labels[:, None, None, None] + np.arange(3)[None, :, None, None]
    assert np.array_equal(images, np.broadcast_to(expected, images.shape))


def test_official_archive_is_unpacked_on_first_use(tmp_path: Path) -> None:
    source = write_cifar(tmp_path / "build" / cifar.BATCH_FOLDER)
    with tarfile.open(tmp_path / cifar.ARCHIVE, "w:gz") as bundle:
        bundle.add(source, arcname=cifar.BATCH_FOLDER)
    data = load_dataset("cifar10", tmp_path, CPU)
    assert len(data.test_y) == BATCH_SIZE
    assert (tmp_path / cifar.BATCH_FOLDER / cifar.TEST_BATCH).is_file()


def test_missing_batches_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="CIFAR-10 batch test_batch not found; looked in .*download"):
        load_dataset("cifar10", tmp_path, CPU)
    write_cifar(tmp_path / cifar.BATCH_FOLDER, skip="data_batch_3")
    with pytest.raises(DatasetError, match="CIFAR-10 batch data_batch_3 not found"):
        load_dataset("cifar10", tmp_path, CPU)
    with pytest.raises(DatasetError, match="needs a data directory"):
        load_dataset("cifar10", None, CPU)


def test_truncated_batch_is_named(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / cifar.BATCH_FOLDER)
    content = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError, match=r"data_batch_2 is not a readable CIFAR-10 batch \(truncated"):
        load_dataset("cifar10", tmp_path, CPU)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2, 3], "holds a list, not a dict"),
        ({b"labels": [0]}, "no 'data' and 'labels'"),
        ({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, "expected N x 3072 uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "labels outside 0..9"),
    ],
)
def test_malformed_batches_are_named(tmp_path: Path, content: object, message: str) -> None:
    folder = write_cifar(tmp_path / cifar.BATCH_FOLDER)
    (folder / cifar.TEST_BATCH).write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DatasetError, match=message) as raised:
        load_dataset("cifar10", tmp_path, CPU)
    assert cifar.TEST_BATCH in str(raised.value)


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch pwned",))


def test_a_batch_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / cifar.BATCH_FOLDER)
    (folder / cifar.TEST_BATCH).write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DatasetError, match="refusing to load"):
        cifar.read_batch(folder / cifar.TEST_BATCH)
    assert not (Path.cwd() / "pwned").exists()


def test_python2_style_batch_with_numpy_1_module_names_loads(tmp_path: Path) -> None:
    # The official files reference numpy.core.multiarray._reconstruct; numpy 2 writes numpy._core.
    buffer = io.BytesIO()
    pickle.dump(batch(0, count=2), buffer, protocol=2)
    legacy = buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in legacy
    path = tmp_path / "legacy"
    path.write_bytes(legacy)
    images, labels = cifar.read_batch(path)
    assert images.shape == (2, 3, 32, 32)
    assert labels.tolist() == [0, 1]


def test_default_space_trains_on_colour_images(tmp_path: Path) -> None:
    from hpo_service.space import default_space
    from workers.trainer import train

    write_cifar(tmp_path)
    data = load_dataset("cifar10", tmp_path, CPU)
    for configuration in default_space(seed=1).sample_configuration(4):
        config = dict(configuration)
        outcome = train(config, 1, CPU, data, seed=0)
        assert outcome.epochs_trained == 1 or outcome.diverged, config
        assert 0.0 <= outcome.test_error <= 1.0
