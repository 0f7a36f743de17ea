"""data.partition: the published MNIST-1D split (standard) vs pooling and re-splitting."""

from __future__ import annotations

import numpy as np
import pytest

from nnopt.config.spec import SpecError, parse_spec
from nnopt.train.data import load_dataset


def _data(**data):
    return load_dataset(parse_spec({"data": {"name": "mnist1d", **data}}).data)


def test_standard_partition_keeps_the_packages_test_set():
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())  # the published set: 4000 train / 1000 test
    ds = _data(val_fraction=0.1, standardize=False)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (3601, 399, 1000)  # stratified: rounded per class
    np.testing.assert_array_equal(ds.x_test, raw["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, raw["y_test"])
    # train + val are exactly the package's train part, validation carved from it
    pooled = np.concatenate([ds.x_train, ds.x_val])
    assert sorted(map(bytes, pooled)) == sorted(map(bytes, raw["x"].astype(np.float32)))


def test_split_seed_only_moves_the_validation_carve_out():
    a, b = _data(split_seed=0), _data(split_seed=1)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_val, b.y_val)


def test_pooled_partition_is_the_old_resplit():
    ds = _data(partition="pooled", n_samples=600)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (420, 90, 90)


def test_partition_is_validated():
    with pytest.raises(SpecError, match=r"data\.partition: unknown value 'official'.*standard"):
        parse_spec({"data": {"partition": "official"}})
