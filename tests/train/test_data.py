"""Datasets: registry, deterministic stratified split, train-only standardization, cache."""

import numpy as np
import polars as pl
import pytest

from nnopt.train.data import DATASET_LOADERS, cache_path, load_dataset, prepare_dataset, split_indices
from nnopt.config.spec import DATASETS, DataSpec, SpecError


def test_registry_keys_match_spec():
    assert tuple(DATASET_LOADERS) == DATASETS


@pytest.mark.parametrize("name", ["spirals", "blobs", "digits"])
def test_loader_shapes_and_types(name):
    ds = load_dataset(DataSpec(name=name, n_samples=300, n_classes=3))
    n = len(ds.y_train) + len(ds.y_val) + len(ds.y_test)
    assert n == 300
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (len(y), *ds.input_shape)
    assert set(np.unique(ds.y_train)) == set(range(ds.n_classes))


def test_mnist1d_is_generated_and_seeded():
    a = load_dataset(DataSpec(name="mnist1d", n_samples=400))
    b = load_dataset(DataSpec(name="mnist1d", n_samples=400))
    c = load_dataset(DataSpec(name="mnist1d", n_samples=400, split_seed=1))
    assert a.input_shape == (40,) and a.n_classes == 10
    assert np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    state = np.random.get_state()[1].copy()
    load_dataset(DataSpec(name="mnist1d", n_samples=100))
    assert np.array_equal(state, np.random.get_state()[1])  # global RNG left alone


def test_split_is_stratified_disjoint_and_deterministic():
    y = np.repeat(np.arange(4), 50)
    train, val, test = split_indices(y, 0.2, 0.1, seed=5)
    assert sorted(np.concatenate([train, val, test])) == list(range(200))
    assert np.bincount(y[test]).tolist() == [5, 5, 5, 5]
    assert np.bincount(y[val]).tolist() == [10, 10, 10, 10]
    again = split_indices(y, 0.2, 0.1, seed=5)
    assert all(np.array_equal(p, q) for p, q in zip((train, val, test), again))
    assert not np.array_equal(train, split_indices(y, 0.2, 0.1, seed=6)[0])


def test_standardization_fitted_on_train_only():
    ds = load_dataset(DataSpec(name="blobs", n_samples=600, noise=0.5))
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1, atol=1e-4)
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-4  # test stats are not forced


def test_table_csv_labels_mapped(tmp_path):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"a": rng.normal(size=90), "b": rng.normal(size=90),
                          "kind": ["cat", "dog", "emu"] * 30})
    frame.write_csv(path)
    ds = load_dataset(DataSpec(name="table", path=str(path), label_column="kind"))
    assert ds.input_shape == (2,) and ds.n_classes == 3
    frame.write_parquet(tmp_path / "t.parquet")
    ds2 = load_dataset(DataSpec(name="table", path=str(tmp_path / "t.parquet"), label_column="kind"))
    np.testing.assert_array_equal(ds.y_train, ds2.y_train)


@pytest.mark.parametrize("column, values, message", [
    ("a", [1.0, float("nan")] * 15, "column 'a' has NaN or inf"),
    ("a", [1.0, float("inf")] * 15, "column 'a' has NaN or inf"),
    ("a", ["x", "y"] * 15, "column 'a' is String, not numeric"),
])
def test_table_bad_features(tmp_path, column, values, message):
    path = tmp_path / "bad.parquet"
    pl.DataFrame({column: values, "label": [0, 1] * 15}).write_parquet(path)
    with pytest.raises(SpecError, match=message) as info:
        load_dataset(DataSpec(name="table", path=str(path)))
    assert str(path) in str(info.value)


def test_table_missing_label_column(tmp_path):
    path = tmp_path / "t.csv"
    pl.DataFrame({"a": [1.0, 2.0] * 20, "y": [0, 1] * 20}).write_csv(path)
    with pytest.raises(SpecError, match="data.label_column: .* has no column 'label'"):
        load_dataset(DataSpec(name="table", path=str(path)))


def test_torchvision_error_is_clear(tmp_path):
    spec = DataSpec(name="torchvision", path=str(tmp_path), torchvision_name="MNIST")
    with pytest.raises(SpecError, match="torchvision"):
        load_dataset(spec)


def test_cache_written_once_and_identical(tmp_path):
    spec = DataSpec(name="spirals", n_samples=200)
    path = prepare_dataset(spec, tmp_path)
    assert path == cache_path(spec, tmp_path) and path.suffix == ".npz"
    mtime = path.stat().st_mtime_ns
    assert prepare_dataset(spec, tmp_path).stat().st_mtime_ns == mtime  # not rewritten
    cached, fresh = load_dataset(spec, tmp_path), load_dataset(spec)
    for name, array in fresh.arrays().items():
        np.testing.assert_array_equal(getattr(cached, name), array)
    assert cached.input_shape == fresh.input_shape and cached.n_classes == fresh.n_classes
    assert np.load(path, mmap_mode="r")["x_train"].dtype == np.float32
    other = DataSpec(name="spirals", n_samples=200, split_seed=1)
    assert cache_path(other, tmp_path) != path
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


class _FakeImages:
    """Stands in for a torchvision dataset class: .data (n, H, W[, C]) uint8, .targets."""

    channels = None

    def __init__(self, root, train, download):
        assert download is False  # never downloads
        n = 60 if train else 30
        rng = np.random.default_rng(0 if train else 1)
        shape = (n, 6, 6) if self.channels is None else (n, 6, 6, self.channels)
        self.data = rng.integers(0, 256, shape, dtype=np.uint8)
        self.targets = list(np.arange(n) % 3)


@pytest.mark.parametrize("channels, shape", [(None, (1, 6, 6)), (3, (3, 6, 6))])
def test_torchvision_images_channels_first(tmp_path, monkeypatch, channels, shape):
    import sys
    import types

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(Fake=type("Fake", (_FakeImages,), {"channels": channels}))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    ds = load_dataset(DataSpec(name="torchvision", path=str(tmp_path), torchvision_name="Fake",
                               standardize=False))
    assert ds.input_shape == shape and ds.n_classes == 3
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 90  # both official splits pooled
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0  # scaled from uint8
