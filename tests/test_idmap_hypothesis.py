"""IdMapIndex against a dict model under random add / remove / search / reload sequences."""

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import vecindex_core as vc

DIM = 4
ids_st = st.lists(st.integers(0, 60), min_size=1, max_size=6)


class IdMapModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.index = vc.create("flat", dim=DIM, metric="ip")
        self.model: dict[int, np.ndarray] = {}
        self.rng = np.random.default_rng(0)

    def _vectors(self, n):
        # small integers: exact float32 dot products, so the model's ranking is exact too
        return self.rng.integers(-3, 4, size=(n, DIM)).astype(np.float32)

    @rule(ids=ids_st)
    def add_with_ids(self, ids):
        x = self._vectors(len(ids))
        if len(set(ids)) != len(ids) or any(i in self.model for i in ids):
            before = self.index.to_bytes()
            with pytest.raises(vc.DuplicateIdError):
                self.index.add(x, ids=ids)
            assert self.index.to_bytes() == before
            return
        got = self.index.add(x, ids=ids)
        assert got.tolist() == ids
        self.model.update(zip(ids, x, strict=True))

    @rule(n=st.integers(1, 4))
    def add_auto(self, n):
        x = self._vectors(n)
        got = self.index.add(x).tolist()
        assert not set(got) & set(self.model)
        self.model.update(zip(got, x, strict=True))

    @rule(ids=ids_st)
    def remove(self, ids):
        present = {i for i in ids if i in self.model}
        assert self.index.remove(ids) == len(present)
        for i in present:
            del self.model[i]

    @precondition(lambda self: self.model)
    @rule(k=st.integers(1, 8))
    def search(self, k):
        q = self._vectors(1)[0]
        res = self.index.search(q, k)
        keys = sorted(self.model)
        scores = np.array([self.model[i] @ q for i in keys], dtype=np.float32)
        expected = sorted(zip(-scores, keys, strict=True))[:k]
        n = min(k, len(keys))
        assert res.counts[0] == n
        np.testing.assert_array_equal(res.scores[0, :n], [-s for s, _ in expected])
        # equal scores may list different ids only among themselves
        got = dict(zip(res.ids[0, :n].tolist(), res.scores[0, :n].tolist(), strict=True))
        assert all(self.model[i] @ q == got[i] for i in got)

    @rule()
    def reload(self):
        self.index = vc.IdMapIndex.from_bytes(self.index.to_bytes())

    @invariant()
    def same_contents(self):
        assert len(self.index) == len(self.model)
        assert sorted(self.index.ids.tolist()) == sorted(self.model)
        if self.model:
            keys = list(self.model)
            np.testing.assert_array_equal(
                self.index.get_vectors(keys), np.stack([self.model[i] for i in keys])
            )


IdMapModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestIdMapModel = IdMapModel.TestCase
