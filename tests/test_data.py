"""Datasets: sizes, determinism, the fixed digits split, and loaders for the real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dynconv_bench.data import DATASETS, dataset_info, get_dataset, num_classes_of
from dynconv_bench.data.cifar import MEAN, STD
from dynconv_bench.data.synthetic import class_attributes, generate
from dynconv_bench.errors import UserError


def test_every_listed_dataset_loads_or_asks_for_its_local_folder() -> None:
    for name in DATASETS:
        try:
            info = dataset_info(name)
        except UserError as exc:  # the datasets that live in a local folder say so
            assert "root" in str(exc) or "folder" in str(exc) or "path" in str(exc), (name, exc)
            continue
        assert info["num_classes"] >= 2 and info["image_size"] >= 8, name


def test_unknown_dataset_split_and_option() -> None:
    with pytest.raises(UserError, match="did you mean 'digits'.*valid: cifar10"):
        get_dataset("digit")
    with pytest.raises(UserError, match="unknown split 'val'.*valid: test, train"):
        get_dataset("digits", "val")
    with pytest.raises(UserError, match="unknown option 'num_clases'.*num_classes"):
        get_dataset("synthetic", num_clases=3)


# -- digits --------------------------------------------------------------------------------------
def test_digits_fixed_stratified_split() -> None:
    from sklearn.datasets import load_digits

    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)  # 1797 images, 20% held out
    assert train[0][0].shape == (3, 32, 32) and isinstance(train[0][1], int)
    full = np.bincount(load_digits().target, minlength=10) / 1797
    for ds in (train, test):
        frac = torch.bincount(ds.labels, minlength=10).double().numpy() / len(ds)
        assert np.abs(frac - full).max() < 0.01  # stratified: class proportions kept
    again = get_dataset("digits", "test", seed=5)
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    assert torch.allclose(train.images.mean(), torch.tensor(0.0), atol=1e-3)
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grey replicated to 3 channels
    assert dataset_info("digits") == {"num_classes": 10, "image_size": 32, "channels": 3}


def test_digits_image_size() -> None:
    assert get_dataset("digits", "test", image_size=16)[0][0].shape == (3, 16, 16)


# -- synthetic -----------------------------------------------------------------------------------
def test_synthetic_deterministic_and_balanced() -> None:
    a = get_dataset("synthetic", "train", seed=3, num_samples=60, num_classes=6, image_size=24)
    b = get_dataset("synthetic", "train", seed=3, num_samples=60, num_classes=6, image_size=24)
    c = get_dataset("synthetic", "train", seed=4, num_samples=60, num_classes=6, image_size=24)
    t = get_dataset("synthetic", "test", seed=3, num_samples=60, num_classes=6, image_size=24)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.images, t.images)
    assert a.images.shape == (60, 3, 24, 24) and torch.isfinite(a.images).all()
    assert torch.bincount(a.labels).tolist() == [10] * 6
    assert num_classes_of(a) == 6 and len(a.classes) == 6
    assert dataset_info("synthetic", num_classes=7)["num_classes"] == 7


def test_synthetic_classes_distinct_for_many_classes() -> None:
    attrs = [class_attributes(c) for c in range(200)]
    assert len(set(attrs)) == 200
    x, y = generate(20, num_classes=200, image_size=16, seed=0)
    assert x.shape == (20, 3, 16, 16) and int(y.max()) < 200
    with pytest.raises(ValueError, match="at least 2 classes"):
        generate(4, num_classes=1)


# -- CIFAR pickle batches ---------------------------------------------------------------------------
def _write_batch(path: Path, n: int, label_key: bytes, num_classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, size=n)]
    with open(path, "wb") as fh:
        pickle.dump({b"data": data, label_key: labels, b"batch_label": b"test"}, fh)
    return data, labels


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> tuple[Path, np.ndarray, list[int]]:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _write_batch(folder / f"data_batch_{i}", 3, b"labels", 10, seed=i)
    data, labels = _write_batch(folder / "test_batch", 4, b"labels", 10, seed=99)
    return tmp_path, data, labels


def test_cifar10_loads_pickle_batches(cifar10_dir: tuple[Path, np.ndarray, list[int]]) -> None:
    root, data, labels = cifar10_dir
    train = get_dataset("cifar10", "train", root=root)  # parent dir: finds cifar-10-batches-py/
    test = get_dataset("cifar10", "test", root=root / "cifar-10-batches-py")
    assert (len(train), len(test)) == (15, 4) and num_classes_of(test) == 10
    x, y = test[2]
    raw = torch.from_numpy(data[2].reshape(3, 32, 32)).float() / 255
    expected = (raw - torch.tensor(MEAN["cifar10"]).view(3, 1, 1)) / torch.tensor(STD["cifar10"]).view(3, 1, 1)
    assert torch.allclose(x, expected) and y == labels[2]
    torch.manual_seed(1)
    a = train[0][0]
    torch.manual_seed(1)
    assert torch.equal(a, train[0][0]) and a.shape == (3, 32, 32)  # augmentation follows torch's seed
    assert get_dataset("cifar10", "test", root=root, image_size=16)[0][0].shape == (3, 16, 16)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    _write_batch(tmp_path / "train", 5, b"fine_labels", 100, seed=1)
    data, labels = _write_batch(tmp_path / "test", 3, b"fine_labels", 100, seed=2)
    test = get_dataset("cifar100", "test", root=tmp_path)
    assert [test[i][1] for i in range(3)] == labels
    assert len(get_dataset("cifar100", "train", root=tmp_path)) == 5
    assert dataset_info("cifar100")["num_classes"] == 100


def test_cifar_missing_or_malformed(tmp_path: Path, cifar10_dir: tuple[Path, np.ndarray, list[int]]) -> None:
    with pytest.raises(UserError, match="does not exist.*data_batch_1.*test_batch"):
        get_dataset("cifar10", root=tmp_path / "nope")
    with pytest.raises(UserError, match="needs --data-root"):
        get_dataset("cifar10")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="missing batch files.*train, test.*fine_labels"):
        get_dataset("cifar100", root=tmp_path / "empty")
    root = cifar10_dir[0] / "cifar-10-batches-py"
    (root / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="malformed"):
        get_dataset("cifar10", "test", root=root)
    with open(root / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, fh)  # no labels key
    with pytest.raises(UserError, match="malformed.*KeyError"):
        get_dataset("cifar10", "test", root=root)


# -- image folders -----------------------------------------------------------------------------------
def _write_images(root: Path, split: str, classes: list[str], per_class: int = 2) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        folder = root / split / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_imagefolder_loads(tmp_path: Path) -> None:
    _write_images(tmp_path, "train", ["cat", "dog", "fox"], per_class=3)
    _write_images(tmp_path, "val", ["cat", "dog", "fox"])
    assert dataset_info("imagefolder", tmp_path) == {"num_classes": 3, "image_size": 224, "channels": 3}
    train = get_dataset("imagefolder", "train", root=tmp_path, image_size=32)
    val = get_dataset("imagefolder", "test", root=tmp_path, image_size=32)
    assert (len(train), len(val), num_classes_of(val)) == (9, 6, 3)
    x, y = val[5]
    assert x.shape == (3, 32, 32) and y == 2
    assert train[0][0].shape == (3, 32, 32)


def test_imagefolder_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist.*root/train/<class>"):
        get_dataset("imagefolder", root=tmp_path / "missing")
    _write_images(tmp_path, "train", ["a", "b"])
    with pytest.raises(UserError, match="no val/ folder"):
        get_dataset("imagefolder", "test", root=tmp_path)
    _write_images(tmp_path, "val", ["a", "c"])
    with pytest.raises(UserError, match="class folders differ"):
        get_dataset("imagefolder", "test", root=tmp_path)
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="root/train/<class>"):
        get_dataset("imagefolder", "train", root=empty)
