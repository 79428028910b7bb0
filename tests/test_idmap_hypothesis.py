"""IdMapIndex against a plain model under random add / remove / search / reload sequences.

The model is a dict ``id -> vector`` plus the slot order (a list of ids) that swap-remove
produces, so search results can be predicted exactly, including the tie rule (equal scores:
lower slot first). Vectors hold small integers, so every ip and l2 score is an exact float32
integer whatever order a kernel sums in.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import vecindex_core as vc
from vecindex_core import MISSING

DIM = 4
SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ids_st = st.lists(st.integers(0, 40), min_size=1, max_size=6)
vec_st = st.lists(st.integers(-3, 3), min_size=DIM, max_size=DIM)


def model_scores(vectors, q, metric):
    if metric == "ip":
        return vectors @ q
    d = vectors - q
    return -(d * d).sum(axis=1)


class IdMapMachine(RuleBasedStateMachine):
    """One random life of an IdMapIndex, checked step by step against the model."""

    spec = "flat"
    metric = "ip"

    def __init__(self):
        super().__init__()
        self.index = vc.create(self.spec, dim=DIM, metric=self.metric)
        self.vectors: dict[int, np.ndarray] = {}
        self.slots: list[int] = []  # ids in slot order
        self.next_id = 0
        self.tmp = tempfile.TemporaryDirectory()

    def teardown(self):
        self.tmp.cleanup()

    @initialize(seed=st.integers(0, 2**16))
    def seed_data(self, seed):
        self.rng = np.random.default_rng(seed)

    def _vectors(self, n):
        return self.rng.integers(-3, 4, size=(n, DIM)).astype(np.float32)

    def _append(self, ids, x):
        for i, v in zip(ids, x, strict=True):
            self.vectors[i] = v
            self.slots.append(i)
        self.next_id = max([self.next_id, *(i + 1 for i in ids)])

    # ----------------------------------------------------------------- rules
    @rule(ids=ids_st)
    def add_with_ids(self, ids):
        x = self._vectors(len(ids))
        if len(set(ids)) != len(ids) or any(i in self.vectors for i in ids):
            before = self.index.to_bytes()
            with pytest.raises(vc.DuplicateIdError, match="nothing was added"):
                self.index.add(x, ids=ids)
            assert self.index.to_bytes() == before
            return
        got = self.index.add(x, ids=ids)
        assert got.dtype == np.uint64 and got.tolist() == ids
        self._append(ids, x)

    @rule(n=st.integers(1, 5))
    def add_auto(self, n):
        x = self._vectors(n)
        got = self.index.add(x).tolist()
        assert got == list(range(self.next_id, self.next_id + n))
        self._append(got, x)

    @rule(ids=ids_st)
    def add_reserved_id(self, ids):
        before = self.index.to_bytes()
        with pytest.raises(vc.InvalidArgumentError, match="reserved"):
            self.index.add(self._vectors(len(ids) + 1), ids=np.array([*ids, MISSING], np.uint64))
        assert self.index.to_bytes() == before

    @rule(ids=ids_st)
    def remove(self, ids):
        gone = {i for i in ids if i in self.vectors}
        assert self.index.remove(ids) == len(gone)
        # swap-remove: holes below the new size take the surviving tail rows, last first
        n = len(self.slots)
        removed = sorted(s for s, i in enumerate(self.slots) if i in gone)
        new_n = n - len(removed)
        holes = [s for s in removed if s < new_n]
        tail = [s for s in range(new_n, n) if self.slots[s] not in gone][::-1]
        for hole, src in zip(holes, tail, strict=True):
            self.slots[hole] = self.slots[src]
        del self.slots[new_n:]
        for i in gone:
            del self.vectors[i]

    @rule(k=st.integers(1, 8), q=vec_st, nq=st.sampled_from([1, 9]))
    def search(self, k, q, nq):
        q = np.array(q, np.float32)
        res = self.index.search(np.tile(q, (nq, 1)), k)
        expected_ids, expected_scores = self._expected(q, k, self.slots)
        for row in range(nq):
            self._check_row(res, row, k, expected_ids, expected_scores)

    @rule(k=st.integers(1, 8), q=vec_st, data=st.data())
    def search_allow(self, k, q, data):
        q = np.array(q, np.float32)
        allowed = data.draw(st.sets(st.integers(0, 45), max_size=10))
        how = data.draw(st.sampled_from(["ids", "mask", "predicate"]))
        if how == "ids":
            allow = sorted(allowed)
        elif how == "mask":
            allow = np.isin(self.index.ids, list(allowed))
        else:
            def allow(a):
                return np.isin(a, np.array(sorted(allowed), dtype=np.uint64))
        res = self.index.search(q, k, allow=allow)
        expected_ids, expected_scores = self._expected(q, k, [i for i in self.slots
                                                              if i in allowed])
        self._check_row(res, 0, k, expected_ids, expected_scores)

    @rule()
    def reload_bytes(self):
        self.index = vc.IdMapIndex.from_bytes(self.index.to_bytes())

    @rule()
    def reload_file(self):
        path = Path(self.tmp.name) / "model.vecidx"
        self.index.save(path)
        self.index = vc.load(path)

    @precondition(lambda self: self.vectors)
    @rule(data=st.data())
    def get_vectors(self, data):
        ids = data.draw(st.lists(st.sampled_from(sorted(self.vectors)), max_size=5))
        got = self.index.get_vectors(ids)
        assert got.shape == (len(ids), DIM)
        for row, i in zip(got, ids, strict=True):
            np.testing.assert_array_equal(row, self.vectors[i])
        absent = next(i for i in range(100) if i not in self.vectors)
        with pytest.raises(vc.UnknownIdError, match=str(absent)):
            self.index.get_vectors([*ids, absent])

    # ----------------------------------------------------------------- checks
    def _expected(self, q, k, slot_ids):
        if not slot_ids:
            return [], np.empty(0, np.float32)
        vectors = np.stack([self.vectors[i] for i in slot_ids])
        scores = model_scores(vectors, q, self.metric).astype(np.float32)
        order = np.lexsort((np.arange(len(slot_ids)), -scores))[:k]  # score desc, slot asc
        return [slot_ids[o] for o in order], scores[order]

    def _check_row(self, res, row, k, expected_ids, expected_scores):
        n = len(expected_ids)
        assert res.ids.shape[1] == k and res.ids.dtype == np.uint64
        assert res.counts[row] == n
        assert res.ids[row, :n].tolist() == expected_ids
        np.testing.assert_array_equal(res.scores[row, :n], expected_scores)
        assert (res.ids[row, n:] == MISSING).all() and np.isneginf(res.scores[row, n:]).all()

    @invariant()
    def same_contents(self):
        assert len(self.index) == len(self.vectors)
        assert self.index.ids.tolist() == self.slots
        assert self.index.next_id == self.next_id
        for i in list(self.vectors)[:5]:
            assert i in self.index


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_flat_idmap_against_model(metric):
    machine = type(f"Flat{metric.title()}Machine", (IdMapMachine,), {"metric": metric})
    run_state_machine_as_test(machine, settings=SETTINGS)


def test_staged_idmap_against_model(staged_kind):
    """An inner kind that needs training (here after 12 rows): staging must be invisible."""
    machine = type("StagedMachine", (IdMapMachine,),
                   {"spec": f"{staged_kind}(min_train=12)", "metric": "ip"})
    run_state_machine_as_test(machine, settings=SETTINGS)
