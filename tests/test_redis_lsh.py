"""``redis_lsh`` against real Redis servers: standalone, a 3-master cluster, and a restart.

Every server is a real ``redis-server`` started by a fixture (tests/conftest.py) on a free
loopback port; nothing is mocked.
"""

import pickle
import threading

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core.redis_lsh import DEFAULT_URL, FALLBACK_ROWS, URL_ENV, RedisLSH
from vecindex_core.testing import restart_redis, start_redis

BANDS, ROWS = 16, 8


@pytest.fixture(params=["standalone", "cluster"])
def url(request):
    """The session's standalone Redis, then the session's 3-master cluster."""
    if request.param == "standalone":
        return request.getfixturevalue("redis_url")
    return request.getfixturevalue("redis_cluster_url")


def new(url, **params):
    return RedisLSH(384, "cosine", url=url, **params)


def redis_client(index):
    return index._redis()


def scan(index):
    """Every key of the index's namespace, by kind: buckets {key: members}, record groups
    {key: bytes}, other keys."""
    r = redis_client(index)
    tag = f"{index.params['prefix']}:{{{index.namespace}".encode()
    buckets, records, other = {}, {}, []
    for key in index._scan_keys():
        rest = key[len(tag):]
        if rest.startswith(b".r"):
            records[key] = r.get(key)
        elif rest.startswith(b"."):
            buckets[key] = np.frombuffer(r.get(key), dtype="<u4")
        else:
            other.append(key)
    return buckets, records, other


def exact_ids(x, q, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]


def recall(found, truth):
    return np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / len(t)
                    for f, t in zip(found, truth, strict=True)])


# --------------------------------------------------------------------------- basics
def test_add_search_recall_standalone_and_cluster(url, small):
    x, q = small
    index = new(url, keep_vectors=True)
    index.add(x)
    assert index.ntotal == len(x) and index.rowkeys.tolist() == list(range(len(x)))
    res = index.search(q, 10)
    assert res.ids.shape == (len(q), 10) and (res.counts == 10).all()
    assert recall(res.ids, exact_ids(x, q, 10)) >= 0.7
    # exact scores: each reported score is the true cosine of that row
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(res.scores, np.take_along_axis(qn @ xn.T, res.ids, 1),
                               atol=1e-5)
    buckets, records, other = scan(index)
    assert sum(b.size for b in buckets.values()) == BANDS * len(x)
    assert len(records) == -(-len(x) // 128)
    assert len(other) == 2  # the row-key counter and the metadata hash


def test_cluster_keys_of_one_band_share_a_slot(redis_cluster_url, small):
    from redis.crc import key_slot

    x, _ = small
    index = new(redis_cluster_url)
    index.add(x[:300])
    assert index.is_cluster
    buckets, _, _ = scan(index)
    slots_by_band = {}
    for key in buckets:
        band = int(key.split(b".", 1)[1].split(b"}", 1)[0])
        slots_by_band.setdefault(band, set()).add(key_slot(key))
    assert sorted(slots_by_band) == list(range(BANDS))
    assert all(len(s) == 1 for s in slots_by_band.values())
    assert len({next(iter(s)) for s in slots_by_band.values()}) > 1  # bands spread out


def test_cluster_and_standalone_give_the_same_answers(redis_url, redis_cluster_url, small):
    x, q = small
    results = []
    for url in (redis_url, redis_cluster_url):
        for keep in (True, False):
            index = new(url, keep_vectors=keep, seed=5)
            index.add(x)
            index.remove([0, 10, 999])
            results.append(index.search(q, 10))
    for a, b in ((results[0], results[2]), (results[1], results[3])):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_indexes_built_alike_search_alike(redis_url, small):
    # the conformance suite's byte-equality tests are known gaps for redis_lsh (each index
    # owns a fresh namespace); this is the property they stand for
    x, q = small
    a = vc.create("redis_lsh(keep_vectors=true)", dim=384)
    b = vc.create("redis_lsh(keep_vectors=true)", dim=384)
    a.add(x[:300], ids=np.arange(100, 400))
    b.add(x[:300].tolist(), ids=list(range(100, 400)))
    assert a.index.namespace != b.index.namespace
    ra, rb = a.search(q, 10), b.search(q.tolist(), 10)
    np.testing.assert_array_equal(ra.ids, rb.ids)
    np.testing.assert_array_equal(ra.scores, rb.scores)
    assert a.index.url == redis_url  # from $VECINDEX_REDIS_URL, set by the conftest fixture


def test_without_vectors_ranks_by_collision_count(url, small):
    x, q = small
    index = new(url)
    index.add(x)
    res, cand = index.search_stats(q, 10, params={"num_probes": 0})
    assert (cand > 0).all()
    # scores are the similarity the collision count estimates: monotone, at most 1
    assert (np.diff(res.scores, axis=1) <= 0).all() and (res.scores <= 1).all()
    # recompute the counts from the hashes: the reported order is by count, ties by slot
    hx, _ = index.band_values(index.prepare(x))
    hq, _ = index.band_values(index.prepare(q))
    for i in range(len(q)):
        counts = (hx == hq[i]).sum(axis=1)
        order = np.lexsort((np.arange(len(x)), -counts))
        n = min(10, int(cand[i]))
        np.testing.assert_array_equal(res.ids[i, :n], order[:n])
    assert index.search(q, 10).ids.shape == (len(q), 10)


def test_multi_probe_finds_more_candidates_and_recall(redis_url, sample):
    index = new(redis_url, keep_vectors=True)
    index.add(sample.base)
    truth = exact_ids(sample.base, sample.queries, 10)
    previous = None
    for probes in (0, 2, 8):
        res, cand = index.search_stats(sample.queries, 10, params={"num_probes": probes})
        r = recall(res.ids, truth)
        if previous is not None:
            assert (cand >= previous[0]).all() and r > previous[1]
        previous = (cand, r)
    assert previous is not None and previous[1] >= 0.9


def test_rerank_limits_exact_scoring_to_the_most_colliding(redis_url, small):
    x, q = small
    index = new(redis_url, keep_vectors=True)
    index.add(x)
    full = index.search(q, 10)
    short = index.search(q, 10, params={"rerank": 10})
    assert not np.array_equal(full.ids, short.ids)
    # the rerank=10 result is the exact ordering of the 10 most-colliding candidates
    plain = new(redis_url)
    plain.add(x)
    top = plain.search(q, 10, params={"num_probes": 4})
    for i in range(len(q)):
        assert set(short.ids[i].tolist()) == set(top.ids[i].tolist())


def test_vector_fetch_fn_gives_the_kept_vectors_answers(redis_url, small):
    x, q = small
    kept = new(redis_url, keep_vectors=True)
    kept.add(x)
    calls = []

    def fetch(slots):
        calls.append(slots.copy())
        return x[slots]  # the caller's store, in slot order

    fetched = new(redis_url, vector_fetch_fn=fetch)
    fetched.add(x)
    for params in (None, {"rerank": 50}, {"num_probes": 0, "rerank": 5}):
        calls.clear()
        a = kept.search(q, 10, params=params)
        b = fetched.search(q, 10, params=params)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
        assert calls and all((np.diff(c) > 0).all() for c in calls)  # unique sorted slots
    # a small filter goes to exact search through the fetch function too
    mask = np.zeros(len(x), bool)
    mask[::97] = True
    np.testing.assert_array_equal(kept.search(q, 5, mask=mask).ids,
                                  fetched.search(q, 5, mask=mask).ids)
    with pytest.raises(vc.InvalidArgumentError, match="returned 3 vectors for"):
        fetched.vector_fetch_fn = lambda slots: x[:3]
        fetched.search(q, 10, params={"rerank": 5})


def test_min_score_is_a_real_cutoff(redis_url, small):
    x, q = small
    index = new(redis_url, keep_vectors=True)
    index.add(x)
    ref = index.search(q, 10)
    cut = float(np.median(ref.scores))
    res = index.search(q, 10, params={"min_score": cut})
    np.testing.assert_array_equal(res.counts, (ref.scores >= cut).sum(axis=1))
    for i in range(len(q)):
        n = res.counts[i]
        np.testing.assert_array_equal(res.ids[i, :n], ref.ids[i, :n])
        assert (res.ids[i, n:] == -1).all() and np.isneginf(res.scores[i, n:]).all()


def test_short_queries_and_small_masks_fall_back(redis_url, small):
    x, q = small
    for keep in (True, False):
        index = new(redis_url, keep_vectors=keep)
        index.add(x[:3])  # far too few rows for the buckets to find them all
        res = index.search(q, 5)
        assert (res.counts == 3).all()
        assert all(set(r[:3].tolist()) == {0, 1, 2} for r in res.ids)
        index.add(x[3:])
        mask = np.zeros(len(x), bool)
        mask[[5, 50, 500, 900]] = True
        res = index.search(q, 10, mask=mask)
        assert (res.counts == 4).all() and np.isin(res.ids[:, :4], [5, 50, 500, 900]).all()
    assert FALLBACK_ROWS >= 1000


# --------------------------------------------------------------------------- remove / clear
def test_remove_leaves_no_stale_member(url, small):
    x, q = small
    index = vc.create("redis_lsh", dim=384, url=url)
    ids = index.add(x, ids=np.arange(len(x), dtype=np.uint64) * 3)
    inner = index.index
    gone = ids[::4]
    gone_rows = inner.rowkeys[::4].copy()  # slots 0, 4, 8... hold ids 0, 12, 24...
    assert index.remove(gone) == len(gone)
    buckets, records, _ = scan(inner)
    members = np.concatenate(list(buckets.values()))
    assert not np.isin(members, gone_rows).any(), "a removed row key is still in a bucket"
    assert members.size == BANDS * (len(x) - len(gone))
    assert np.array_equal(np.unique(members), np.sort(inner.rowkeys))
    # the removed rows' reverse records are zeroed; the survivors' are intact
    found, _ = inner._read_sigs(gone_rows.astype(np.uint64))
    assert not found.any()
    found, sig = inner._read_sigs(inner.rowkeys.astype(np.uint64))
    assert found.all()
    expected, _ = inner.band_values(inner.prepare(x[(index.ids // 3).astype(np.int64)]))
    np.testing.assert_array_equal(sig, expected)
    res = index.search(q, 10)
    assert not np.isin(res.ids, gone).any()
    # removing everything leaves only the counter and metadata
    index.remove(index.ids.copy())
    buckets, records, other = scan(inner)
    assert buckets == {} and records == {} and len(other) == 2


def test_clear_deletes_only_its_own_keys(url, small):
    x, _ = small
    a = new(url, prefix="app1")
    b = new(url, prefix="app1")  # same prefix, another namespace
    c = new(url, prefix="app2")
    for index in (a, b, c):
        index.add(x[:200])
    r = redis_client(a)
    r.set("app1:unrelated", b"keep me")
    before_b, before_c = scan(b), scan(c)
    old_namespace = a.namespace
    deleted = a.clear()
    assert deleted == len(scan(b)[0]) + len(scan(b)[1]) + 2  # a held what b holds
    assert a.ntotal == 0 and a.namespace != old_namespace
    assert not list(r.scan_iter(match=f"app1:{{{old_namespace}*"))
    assert scan(b)[0].keys() == before_b[0].keys() and scan(c)[0].keys() == before_c[0].keys()
    assert r.get("app1:unrelated") == b"keep me"
    r.delete("app1:unrelated")
    a.add(x[:10])  # usable again, in its fresh namespace
    assert a.ntotal == 10 and a.rowkeys.tolist() == list(range(10))


def test_numpy_id_arrays_work(redis_url, small):
    x, q = small
    index = vc.create("redis_lsh(keep_vectors=true)", dim=384)
    for ids in (np.arange(10, 60, dtype=np.uint64), np.arange(60, 110, dtype=np.int64),
                np.arange(110, 160, dtype=np.int32), list(range(160, 210))):
        index.add(x[: len(ids)] if isinstance(ids, list) else x[: ids.size], ids=ids)
    assert len(index) == 200
    assert index.remove(np.array([10, 11, 12], dtype=np.uint64)) == 3
    assert index.remove(np.array([60], dtype=np.int64)) == 1
    res = index.search(q, 5, allow=np.arange(110, 160, dtype=np.int64))
    assert np.isin(res.ids, np.arange(110, 160)).all()
    assert np.uint64(13) in index and 10 not in index
    np.testing.assert_allclose(index.get_vectors(np.array([13], np.uint64)),
                               x[3:4] / np.linalg.norm(x[3]), rtol=1e-6)


# --------------------------------------------------------------------------- persistence
def test_save_load_reconnects_and_copies_share_buckets(redis_url, small, tmp_path):
    x, q = small
    index = vc.create("redis_lsh", dim=384, seed=3)
    index.add(x)
    ref = index.search(q, 10)
    path = tmp_path / "lsh.vecidx"
    index.save(path)
    loaded = vc.load(path)
    assert loaded.index.namespace == index.index.namespace and loaded.index.url == redis_url
    res = loaded.search(q, 10)
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_array_equal(res.scores, ref.scores)
    np.testing.assert_array_equal(loaded.index.projection_, index.index.projection_)
    # copies are handles: a row added through one is invisible to the other ...
    other = pickle.loads(pickle.dumps(index))
    other.add(x[:1])
    np.testing.assert_array_equal(index.search(q, 10).ids, ref.ids)
    # ... and a remove through one strips the buckets all handles read
    other.remove([7])
    buckets, _, _ = scan(index.index)
    assert not np.isin(np.concatenate(list(buckets.values())), [7]).any()


def test_credentials_are_never_saved(redis_url, small, monkeypatch):
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    index = RedisLSH(384, url=f"redis://user:s3cret@127.0.0.1:{port}/0")
    assert "s3cret" not in index.spec and "s3cret" not in repr(index)
    assert index.url == f"redis://127.0.0.1:{port}/0"
    assert b"s3cret" not in index.to_bytes()
    monkeypatch.setenv(URL_ENV, f"redis://:hidden@127.0.0.1:{port}/0")
    env = RedisLSH(384)
    assert env.url == f"redis://127.0.0.1:{port}/0" and b"hidden" not in env.to_bytes()
    monkeypatch.delenv(URL_ENV)
    assert RedisLSH(384).url == DEFAULT_URL


def test_unix_socket_url(redis_server, small):
    x, q = small
    index = new(redis_server.extra["unix_url"], keep_vectors=True)
    index.add(x[:100])
    assert index.search(q, 3).counts.tolist() == [3] * len(q)
    path = redis_server.extra["unix_url"][len("unix://"):].split("?")[0]
    bare = new(path)  # a bare path is a Unix socket
    bare.add(x[:5])
    assert bare.url == f"unix://{path}"


def test_stats_report_buckets_and_memory(redis_url, small):
    x, _ = small
    index = new(redis_url)
    index.add(x)
    st = index.stats(sample=50)
    assert st["ntotal"] == len(x) and st["row_keys_issued"] == len(x)
    assert st["members"] == BANDS * len(x)
    assert sum(st["buckets_per_band"]) == st["bucket_count"] <= BANDS * 2**ROWS
    assert st["bucket_size"]["max"] >= st["bucket_size"]["p50"] >= st["bucket_size"]["min"] >= 1
    assert sum(st["bucket_size"]["histogram"].values()) == st["bucket_count"]
    assert st["memory_bytes"]["total"] > 0 and 0 < st["memory_per_row"] < 1000
    with pytest.raises(vc.InvalidArgumentError, match="sample"):
        index.stats(sample=0)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"prefix": "a b"}, vc.InvalidParameterError, "prefix 'a b'"),
        ({"prefix": "a{b}"}, vc.InvalidParameterError, "prefix"),
        ({"url": "http://localhost"}, vc.InvalidParameterError, "scheme 'http'"),
        ({"url": "redis://"}, vc.InvalidParameterError, "names no host"),
        ({"url": "redis://h:port/0"}, vc.InvalidParameterError, "malformed"),
        ({"url": 6379}, vc.InvalidParameterError, "url=6379"),
        ({"rerank": 10}, vc.InvalidParameterError, "keep_vectors"),
        ({"rows_per_band": 33}, vc.InvalidParameterError, "rows_per_band=33"),
        ({"num_bands": 0}, vc.InvalidParameterError, "num_bands=0"),
        ({"vector_fetch_fn": "not callable"}, vc.InvalidArgumentError, "callable"),
    ],
)
def test_bad_parameters_raise_typed_errors(params, error, match):
    with pytest.raises(error, match=match):
        RedisLSH(384, **params)


def test_bad_search_input_raises_and_changes_nothing(redis_url, small):
    x, q = small
    index = new(redis_url)
    index.add(x[:50])
    before = index.to_bytes()
    for params, match in (({"rerank": 5}, "keep_vectors=true or a vector_fetch_fn"),
                          ({"num_probes": -1}, "num_probes"), ({"bogus": 1}, "bogus"),
                          ({"min_score": float("nan")}, "not finite")):
        with pytest.raises(vc.InvalidParameterError, match=match):
            index.search(q, 3, params=params)
    with pytest.raises(vc.DimensionMismatchError, match="380 dimensions"):
        index.add(x[:2, :380])
    with pytest.raises(vc.NonFiniteError):
        index.add(np.full((1, 384), np.nan))
    assert index.to_bytes() == before
    assert sum(b.size for b in scan(index)[0].values()) == BANDS * 50


def test_load_rejects_a_corrupt_state(redis_url, small):
    x, _ = small
    index = new(redis_url)
    index.add(x[:10])
    header, arrays = index._to_file()
    bad = dict(arrays)
    bad["index/rowkeys"] = np.zeros(10, np.uint32)  # repeated row keys
    from vecindex_core.base import index_from_file

    with pytest.raises(vc.IndexFormatError, match="repeat"):
        index_from_file(header, bad, "test")
    header = {**header, "state": {**header["state"], "namespace": "../etc"}}
    with pytest.raises(vc.IndexFormatError, match="location"):
        index_from_file(header, arrays, "test")


# --------------------------------------------------------------------------- faults
@pytest.fixture
def own_redis(tmp_path):
    """A standalone server of this test's own (append-only file on), for restarts."""
    holder = {"server": start_redis(tmp_path / "redis")}
    yield holder
    holder["server"].stop()


def test_unreachable_server_raises_typed_errors_and_changes_nothing(own_redis, small):
    x, q = small
    index = vc.create("redis_lsh(keep_vectors=true)", dim=384, url=own_redis["server"].uri)
    index.add(x[:500])
    before = index.to_bytes()
    own_redis["server"].stop()
    for call in (lambda: index.add(x[500:600]), lambda: index.remove([1, 2, 3]),
                 lambda: index.search(q, 5), lambda: index.index.clear(),
                 lambda: index.index.stats()):
        with pytest.raises(vc.ServiceUnavailableError, match="unavailable") as info:
            call()
        assert isinstance(info.value, ConnectionError)
    assert index.to_bytes() == before and len(index) == 500
    own_redis["server"] = restart_redis(own_redis["server"])
    # the failed add left nothing visible; the next write cleans whatever it may have left
    index.add(x[500:600])
    assert len(index) == 600
    buckets, _, _ = scan(index.index)
    members = np.concatenate(list(buckets.values()))
    assert members.size == BANDS * 600
    assert np.array_equal(np.unique(members), np.sort(index.index.rowkeys))


def test_an_add_whose_reply_was_lost_is_cleaned_up(redis_url, small):
    # the buckets were written but the client never learnt it (EXEC ran, the reply was lost):
    # those row keys are never made live, and the next write strips them
    x, _ = small
    index = new(redis_url)
    index.add(x[:100])
    h, _ = index.band_values(index.prepare(x[100:150]))
    lost = np.arange(100, 150, dtype=np.uint64)
    redis_client(index).incrby(index._counter_key, 50)
    index._write_rows(lost, h)
    index._dirty.append(lost)
    assert index.ntotal == 100
    index.add(x[150:160])
    members = np.concatenate(list(scan(index)[0].values()))
    assert not np.isin(members, lost).any() and members.size == BANDS * 110
    assert index.rowkeys[-10:].tolist() == list(range(150, 160))


def test_restart_mid_query_stream(own_redis, small):
    x, q = small
    index = vc.create("redis_lsh", dim=384, url=own_redis["server"].uri)
    index.add(x)
    index.remove(np.arange(0, 1000, 7))
    ref = index.search(q, 10)
    down, saw_error, up = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def restart():
        try:
            server = own_redis["server"]
            server.stop()
            down.set()
            saw_error.wait(60)
            own_redis["server"] = restart_redis(server)
        except BaseException as e:  # reported below
            failures.append(e)
        finally:
            up.set()

    thread = threading.Thread(target=restart)
    outcomes = []
    thread.start()
    try:
        for _ in range(1_000_000):  # a bound, not a timing: the loop ends on its own
            try:
                res = index.search(q, 10)
            except vc.ServiceUnavailableError:
                outcomes.append("error")
                if down.is_set():
                    saw_error.set()
                continue
            np.testing.assert_array_equal(res.ids, ref.ids)  # never a wrong answer
            np.testing.assert_array_equal(res.scores, ref.scores)
            outcomes.append("ok")
            if up.is_set() and "error" in outcomes and outcomes[-3:] == ["ok"] * 3:
                break
    finally:
        saw_error.set()
        thread.join(120)
    assert not failures, failures
    assert "error" in outcomes and outcomes[-1] == "ok"
    # nothing lost: the append-only file brought back every bucket written before
    buckets, _, _ = scan(index.index)
    members = np.concatenate(list(buckets.values()))
    assert members.size == BANDS * len(index)
    assert np.array_equal(np.unique(members), np.sort(index.index.rowkeys))
    index.add(x[:5])  # and it takes writes again
    assert len(index) == 1000 - 143 + 5


def test_a_collection_lends_its_stored_vectors_for_reranks(redis_url, small, tmp_path):
    # Without keep_vectors the index holds only row keys; the Collection wires its SQLite
    # vectors in as the vector_fetch_fn, so reranked scores are exact, also after a reopen.
    x, q = small
    ids = [f"d{i}" for i in range(len(x))]
    kept = vc.Collection(tmp_path / "kept.db", index="redis_lsh", metric="cosine",
                         index_params={"url": redis_url, "keep_vectors": True})
    kept.upsert(ids, None, x)
    path = tmp_path / "fetched.db"
    coll = vc.Collection(path, index="redis_lsh", metric="cosine", index_params={"url": redis_url})
    coll.upsert(ids, None, x)
    assert coll.index is not None and not coll.index.index.keeps_vectors
    for _ in range(2):
        a = kept.search_batch(q, 10, params={"rerank": 50})
        b = coll.search_batch(q, 10, params={"rerank": 50})
        assert [[h.record.id for h in r] for r in a] == [[h.record.id for h in r] for r in b]
        hit = b[0][0]
        v = x[int(hit.record.id[1:])]
        want = float(v @ q[0] / (np.linalg.norm(v) * np.linalg.norm(q[0])))
        assert hit.score == pytest.approx(want, abs=1e-5)
        coll.flush()
        coll.close()
        coll = vc.Collection(path)
    coll.close()
    kept.close()
