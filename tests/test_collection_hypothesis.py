"""Collection against a plain dict model, under random sequences of writes and reopens."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecindex_core import Collection
from vecindex_core.errors import DuplicateIdError

DIM = 4
IDS = st.sampled_from([f"d{i}" for i in range(12)])
META = st.fixed_dictionaries({"g": st.integers(0, 3)}, optional={"t": st.sampled_from(["a", "b"])})
VEC = st.one_of(st.none(), st.lists(st.integers(-3, 3), min_size=DIM, max_size=DIM))
GROUP = st.integers(0, 3).map(lambda g: {"field": "meta.g", "operator": "==", "value": g})

OPS = st.one_of(
    st.tuples(
        st.just("upsert"),
        st.lists(st.tuples(IDS, VEC, META), min_size=1, max_size=5),
        st.sampled_from(["overwrite", "skip", "fail"]),
    ),
    st.tuples(st.just("delete"), st.lists(IDS, max_size=4)),
    st.tuples(st.just("delete_filter"), GROUP),
    st.tuples(st.just("update"), GROUP, st.sampled_from(["a", "b"])),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("flush")),
    st.tuples(st.just("clear")),
)


def model_matches(flt: dict, meta: dict) -> bool:
    return meta.get("g") == flt["value"]


def check(coll: Collection, model: dict[str, tuple]) -> None:
    got = {r.id: (r.metadata, None if r.vector is None else r.vector.tolist())
           for r in coll.find(include_vectors=True)}
    want = {i: (m, None if v is None else [float(a) for a in v]) for i, (v, m) in model.items()}
    assert got == want
    assert [r.id for r in coll.find()] == list(model)  # first-write order
    for g in range(4):
        flt = {"field": "meta.g", "operator": "==", "value": g}
        assert coll.count(flt) == sum(model_matches(flt, m) for _, m in model.values())
    with_vec = {i: np.array(v, np.float32) for i, (v, _) in model.items() if v is not None}
    q = np.array([1, 2, -1, 0.5], np.float32)
    hits = coll.search(q, 20)
    assert sorted(h.record.id for h in hits) == sorted(with_vec)
    for h in hits:
        np.testing.assert_allclose(h.score, float(with_vec[h.record.id] @ q), atol=1e-4)
    assert coll.index is None or coll.index.ntotal == len(with_vec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=25))
def test_collection_matches_dict_model(ops) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.db"
        coll = Collection(path, index="flat", metric="ip", dim=DIM)
        model: dict[str, tuple] = {}
        for op in ops:
            if op[0] == "upsert":
                batch, policy = op[1], op[2]
                ids = [b[0] for b in batch]
                try:
                    coll.upsert(ids, None, [b[1] for b in batch], [b[2] for b in batch],
                                on_duplicate=policy)
                except DuplicateIdError:
                    assert len(set(ids)) < len(ids) or (
                        policy == "fail" and any(i in model for i in ids)
                    )
                else:
                    assert len(set(ids)) == len(ids)
                    for i, v, m in batch:
                        if policy == "skip" and i in model:
                            continue
                        model[i] = (v, m)
            elif op[0] == "delete":
                n = coll.delete(op[1])
                gone = {i for i in op[1] if i in model}
                assert n == len(gone)
                for i in gone:
                    del model[i]
            elif op[0] == "delete_filter":
                n = coll.delete(filter=op[1])
                gone = [i for i, (_, m) in model.items() if model_matches(op[1], m)]
                assert n == len(gone)
                for i in gone:
                    del model[i]
            elif op[0] == "update":
                n = coll.update_metadata(op[1], {"t": op[2]})
                hit = [i for i, (_, m) in model.items() if model_matches(op[1], m)]
                assert n == len(hit)
                for i in hit:
                    v, m = model[i]
                    model[i] = (v, {**m, "t": op[2]})
            elif op[0] == "reopen":
                coll.close()
                coll = Collection(path)
            elif op[0] == "flush":
                coll.flush()
            else:
                assert coll.clear() == len(model)
                model.clear()
            check(coll, model)
        coll.close()
