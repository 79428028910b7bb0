"""IdMapIndex: ids, counter, swap-remove, automatic training through staging."""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import registry


def test_counter_is_saved_and_skips_explicit_ids(tmp_path):
    index = vc.create("flat", dim=3)
    assert index.add(np.eye(3)).tolist() == [0, 1, 2]
    index.add(np.ones(3), ids=[10])
    assert index.add(np.ones(3)).tolist() == [11]
    index.save(tmp_path / "i.vecidx")
    again = vc.load(tmp_path / "i.vecidx")
    assert again.add(np.ones(3)).tolist() == [12]


def test_contains_len_get_vectors(rng):
    index = vc.create("flat", dim=4, metric="ip")
    x = rng.standard_normal((5, 4)).astype(np.float32)
    index.add(x, ids=[50, 40, 30, 20, 10])
    assert len(index) == 5 and 30 in index and 31 not in index
    assert "30" not in index and -1 not in index and 2**70 not in index
    np.testing.assert_array_equal(index.get_vectors([10, 50]), x[[4, 0]])
    with pytest.raises(vc.UnknownIdError, match="77") as info:
        index.get_vectors([10, 77])
    assert isinstance(info.value, KeyError)
    assert index.remove([40, 99]) == 1
    np.testing.assert_array_equal(index.get_vectors([10, 50, 30]), x[[4, 0, 2]])


class _Centered(vc.VectorIndex):
    """Test-only kind that needs training: exact search after subtracting a learned mean."""

    def __init__(self, dim: int, metric: Any = "ip", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self.flat = vc.FlatIndex(dim, metric)
        self.mean_: np.ndarray | None = None

    @property
    def ntotal(self) -> int:
        return self.flat.ntotal

    @property
    def is_trained(self) -> bool:
        return self.mean_ is not None

    @property
    def min_train_size(self) -> int:
        return 50

    def memory_bytes(self) -> int:
        return self.flat.memory_bytes()

    def _train(self, x):
        self.mean_ = x.mean(0)

    def _add(self, x):
        self.flat._add(x)

    def _search(self, q, k, params: Mapping[str, Any], mask):
        return self.flat._search(q, k, params, mask)

    def _remove(self, slots, moves):
        self.flat._remove(slots, moves)

    def _get_state(self):
        arrays = {"vectors": self.flat.vectors}
        if self.mean_ is not None:
            arrays["mean"] = self.mean_
        return {}, arrays

    def _set_state(self, state, arrays):
        self.flat._set_state({}, {"vectors": arrays["vectors"]})
        self.mean_ = arrays.get("mean")


@pytest.fixture
def centered_kind():
    registry.register("test_centered", exact=True)(_Centered)
    yield "test_centered"
    del registry._REGISTRY["test_centered"]


def test_auto_training_through_staging(centered_kind, tmp_path, rng):
    x = rng.standard_normal((80, 8)).astype(np.float32)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    index = vc.create(centered_kind, dim=8, metric="ip")
    exact = vc.create("flat", dim=8, metric="ip")
    ids = index.add(x[:30], ids=np.arange(30) * 2)
    exact.add(x[:30], ids=ids)
    assert not index.is_trained
    np.testing.assert_array_equal(index.search(q, 5).ids, exact.search(q, 5).ids)
    index.remove([0, 2])
    exact.remove([0, 2])
    index.save(tmp_path / "staged.vecidx")
    staged = vc.load(tmp_path / "staged.vecidx")
    assert not staged.is_trained and len(staged) == 28
    np.testing.assert_array_equal(staged.search(q, 5).ids, exact.search(q, 5).ids)
    with pytest.raises(vc.InvalidParameterError, match="nprobe"):
        staged.search(q, 5, params={"nprobe": 3})
    more = staged.add(x[30:])
    exact.add(x[30:], ids=more)
    assert staged.is_trained and len(staged) == 78
    np.testing.assert_array_equal(staged.search(q, 5).ids, exact.search(q, 5).ids)
    with pytest.raises(vc.NotTrainedError, match="test_centered"):
        _Centered(8).add(x)
