"""Image sets read without torchvision (idx, CIFAR pickles); a missing or broken torchvision
is one line at check time."""

import gzip
import pickle
import sys

import numpy as np
import pytest

from nnopt.config.check_io import check_data
from nnopt.config.spec import DataSpec, SpecError
from nnopt.train.data import load_dataset
from nnopt.train.vision import read_idx


def _idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _fake_mnist(root, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    for prefix, n, gz in (("train", n_train, True), ("t10k", n_test, False)):
        images = rng.integers(0, 256, (n, 6, 5))
        _idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 4, gz)


def test_idx_round_trip(tmp_path):
    array = np.arange(24).reshape(2, 3, 4)
    _idx(tmp_path / "a-idx3-ubyte", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), array)


def test_mnist_without_torchvision(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision fails
    _fake_mnist(tmp_path)
    spec = DataSpec(name="torchvision", path=str(tmp_path), torchvision_name="MNIST",
                    standardize=False, val_fraction=0.2, test_fraction=0.2)
    check_data(spec)
    ds = load_dataset(spec)
    assert ds.input_shape == (1, 6, 5) and ds.n_classes == 4
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 60  # both splits pooled
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_cifar10_pickles_without_torchvision(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    first = None
    for name in names:
        data = rng.integers(0, 256, (6, 3072)).astype(np.uint8)
        first = data if first is None else first
        batch = {b"data": data, b"labels": [0, 1, 2, 0, 1, 2]}
        (folder / name).write_bytes(pickle.dumps(batch))
    spec = DataSpec(name="torchvision", path=str(tmp_path), torchvision_name="CIFAR10",
                    standardize=False, val_fraction=0.2, test_fraction=0.2)
    ds = load_dataset(spec)
    assert ds.input_shape == (3, 32, 32) and ds.n_classes == 3
    # channel c of image 0 is bytes [1024c, 1024(c+1)) of its row, scaled to [0, 1]
    pool = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).reshape(-1, 3072)
    assert any(np.allclose(row, first[0] / 255.0) for row in pool)


def test_tampered_cifar_pickle_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": print}))  # a global: code
    spec = DataSpec(name="torchvision", path=str(tmp_path), torchvision_name="CIFAR10")
    with pytest.raises(SpecError, match="not a CIFAR batch file .*refused global builtins.print"):
        load_dataset(spec)


def test_missing_files_are_one_line_at_check_time(tmp_path):
    spec = DataSpec(name="torchvision", path=str(tmp_path), torchvision_name="FashionMNIST")
    with pytest.raises(SpecError, match=r"data.path: torchvision dataset FashionMNIST not found"
                                        r" under .*: missing .*train-images-idx3-ubyte \(4 files"):
        check_data(spec)


def test_broken_torchvision_is_one_line_at_check_time(tmp_path, monkeypatch):
    # What PyPI's torchvision does beside a CPU-only torch: it raises while importing.
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    spec = DataSpec(name="torchvision", path=str(tmp_path), torchvision_name="SVHN")
    with pytest.raises(SpecError) as err:
        check_data(spec)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("data.torchvision_name: 'SVHN' needs torchvision, which does not "
                              "import here (RuntimeError: operator torchvision::nms")
    assert "allowed without it: MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100" in message
