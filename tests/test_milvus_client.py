"""The Milvus connection layer, against embedded milvus-lite and a real Milvus 2.3 server."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core.milvus import client as mc
from vecindex_core.testing import free_port

DIM = 16


def _collection(c, name, index_type="FLAT", build=None, metric="l2"):
    pymilvus = mc.import_pymilvus()
    it, params = mc.check_index(index_type, build, lite=False)
    schema = c.create_schema(auto_id=False)
    schema.add_field("key", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=DIM)
    mc.create_collection(c, name, schema, mc.index_params(c, "vector", it, metric, params))


def _insert(c, name, x, keys=None):
    keys = np.arange(len(x)) if keys is None else keys
    c.insert(name, [{"key": int(k), "vector": v} for k, v in zip(keys, x, strict=True)])


@pytest.fixture
def client(milvus_uri):
    c = mc.connect(milvus_uri)
    made = []
    yield c, made, mc.is_lite(milvus_uri)
    for name in made:
        c.drop_collection(name)
    mc.disconnect(c)


def _name(request, made):
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:60]
    name += f"_{os.getpid()}"
    made.append(name)
    return name


# --------------------------------------------------------------------------- uris
@pytest.mark.parametrize(("uri", "lite"), [
    ("/tmp/x.db", True), ("rel/dir/x.db", True), ("x.db", True),
    ("http://127.0.0.1:19530", False), ("https://h:443", False), ("tcp://h:1", False),
    ("unix:/tmp/milvus.sock", False), ("HTTP://H:1", False),
])
def test_is_lite(uri, lite):
    assert mc.is_lite(uri) is lite


@pytest.mark.parametrize("bad", ["", "  ", None, 3, "ftp://host/x.db", "grpc://h:1"])
def test_is_lite_rejects(bad):
    with pytest.raises(vc.InvalidArgumentError, match="uri"):
        mc.is_lite(bad)


def test_lite_path_checks(tmp_path):
    with pytest.raises(vc.InvalidArgumentError, match="must end with .db"):
        mc.lite_path(tmp_path / "x.sqlite")
    with pytest.raises(vc.InvalidArgumentError, match="does not exist"):
        mc.lite_path(tmp_path / "nowhere" / "x.db")
    (tmp_path / "old.db").write_bytes(b"milvus-lite 2")
    with pytest.raises(vc.InvalidArgumentError, match="regular file"):
        mc.lite_path(tmp_path / "old.db")
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert mc.lite_path(tmp_path / "link" / ".." / "real" / "a.db") == str(
        (tmp_path / "real" / "a.db").resolve())
    with pytest.raises(vc.InvalidArgumentError, match="server uri"):
        mc.lite_path("http://h:1")


# --------------------------------------------------------------------------- index types
@pytest.mark.parametrize(("given", "expected"), [
    (("FLAT", None), ("FLAT", {})),
    (("autoindex", {}), ("AUTOINDEX", {})),
    (("HNSW", None), ("HNSW", {"M": 16, "efConstruction": 200})),
    (("hnsw", {"M": np.int64(8)}), ("HNSW", {"M": 8, "efConstruction": 200})),
    (("IVF_FLAT", {"nlist": 16}), ("IVF_FLAT", {"nlist": 16})),
    ((" ivf_sq8 ", None), ("IVF_SQ8", {"nlist": 128})),
])
@pytest.mark.parametrize("lite", [True, False])
def test_check_index_fills_defaults(given, expected, lite):
    got = mc.check_index(*given, lite=lite)
    assert got == expected
    assert all(type(v) is int for v in got[1].values())


@pytest.mark.parametrize("name", ["DISKANN", "diskann", "GPU_IVF_FLAT", "GPU_CAGRA",
                                  "GPU_BRUTE_FORCE", "gpu_ivf_pq"])
def test_diskann_and_gpu_are_refused_before_sending(name):
    with pytest.raises(vc.NotSupportedError, match="hangs in create_index") as err:
        mc.check_index(name, {}, lite=False)
    assert name in str(err.value)
    # the index kind refuses them at construction, before it ever connects (this uri has
    # nothing listening: a connection attempt would raise ServiceUnavailableError instead)
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(vc.NotSupportedError, match="hangs in create_index"):
        vc.create("milvus", dim=4, uri=uri, index_type=name)


@pytest.mark.parametrize("name", ["IVF_PQ", "SCANN", "HNSW_SQ", "BIN_FLAT"])
def test_other_milvus_types_are_not_supported(name):
    with pytest.raises(vc.NotSupportedError, match="AUTOINDEX, FLAT, HNSW"):
        mc.check_index(name, {}, lite=True)


@pytest.mark.parametrize(("args", "error", "match"), [
    (("BOGUS", {}), vc.InvalidParameterError, "unknown Milvus index_type 'BOGUS'; valid: AUTO"),
    ((3, {}), vc.InvalidParameterError, "must be a string"),
    (("HNSW", {"ef": 3}), vc.InvalidParameterError, "'ef'; valid: M, efConstruction"),
    (("FLAT", {"nlist": 3}), vc.InvalidParameterError, "'nlist'; valid: none"),
    (("HNSW", {"M": 1}), vc.InvalidParameterError, r"M=1 is out of range, expected \[2, 2048\]"),
    (("HNSW", {"M": 4.0}), vc.InvalidParameterError, "M=4.0 must be an integer"),
    (("IVF_FLAT", {"nlist": True}), vc.InvalidParameterError, "nlist=True"),
    (("IVF_SQ8", {"nlist": 70000}), vc.InvalidParameterError, "nlist=70000"),
])
def test_check_index_rejects(args, error, match):
    with pytest.raises(error, match=match):
        mc.check_index(*args, lite=False)


def test_lite_without_faiss_refuses_what_it_would_not_build():
    """milvus-lite builds HNSW/IVF with faiss; without faiss it would silently ignore them."""
    code = textwrap.dedent("""
        import sys
        sys.modules["faiss"] = None  # this interpreter has no faiss
        from vecindex_core.errors import NotSupportedError
        from vecindex_core.milvus.client import check_index
        for name in ("HNSW", "IVF_FLAT", "IVF_SQ8"):
            try:
                check_index(name, {}, lite=True)
            except NotSupportedError as e:
                assert "AUTOINDEX" in str(e) and "faiss" in str(e), e
            else:
                raise SystemExit(name + " was accepted")
            assert check_index(name, {}, lite=False)[0] == name  # a server builds it
        assert check_index("AUTOINDEX", {}, lite=True) == ("AUTOINDEX", {})
        assert check_index("FLAT", {}, lite=True) == ("FLAT", {})
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --------------------------------------------------------------------------- search params
def test_search_params_mapping():
    assert mc.search_params("HNSW", {"ef": 32}) == {"params": {"ef": 32}}
    assert mc.search_params("HNSW", {"ef": 32}, k=100) == {"params": {"ef": 100}}
    assert mc.search_params("IVF_FLAT", {"nprobe": 8}) == {"params": {"nprobe": 8}}
    assert mc.search_params("ivf_sq8", {"nprobe": np.int32(8)}) == {"params": {"nprobe": 8}}
    assert mc.search_params("FLAT", {"ef": 0, "nprobe": 0}) == {"params": {}}
    assert mc.search_params("AUTOINDEX", None) == {"params": {}}


@pytest.mark.parametrize(("args", "match"), [
    (("HNSW", {"efSearch": 4}), "unknown Milvus search parameter 'efSearch'; valid: ef, nprobe"),
    (("FLAT", {"ef": 4}), "ef=4 does not apply to index_type FLAT"),
    (("HNSW", {"nprobe": 4}), "nprobe=4 does not apply to index_type HNSW"),
    (("HNSW", {"ef": -1}), r"ef=-1 is out of range"),
    (("HNSW", {"ef": 1.5}), "ef=1.5 must be an integer"),
    (("IVF_FLAT", {"nprobe": 10**6}), "nprobe=1000000 is out of range"),
])
def test_search_params_reject(args, match):
    with pytest.raises(vc.InvalidParameterError, match=match):
        mc.search_params(*args)


def test_metric_types_and_score_rule():
    assert dict(mc.METRIC_TYPES) == {"cosine": "COSINE", "ip": "IP", "l2": "L2"}
    d = np.array([[0.5, 2.0]], dtype=np.float64)
    for metric in ("cosine", "ip"):
        s = mc.scores_from_distances(d, metric)
        assert s.dtype == np.float32 and (s == d).all()
    assert (mc.scores_from_distances(d, "L2") == -d).all()
    with pytest.raises(vc.InvalidArgumentError, match="unknown metric 'hamming'"):
        mc.scores_from_distances(d, "hamming")


# --------------------------------------------------------------------------- ids
def test_uint64_ids_round_trip_through_int64_keys():
    ids = np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 2], dtype=np.uint64)
    pks = mc.ids_to_pks(ids)
    assert pks.dtype == np.int64
    assert pks.tolist() == [0, 1, -(2**63), -(2**63) + 1, -1]
    assert 2**63 - 1 not in pks.tolist()  # Milvus 2.3.5 never returns that key
    back = mc.pks_to_ids(pks)
    assert back.dtype == np.uint64 and (back == ids).all()


# --------------------------------------------------------------------------- real Milvus
def test_distances_follow_the_score_rule(client, request):
    c, made, _ = client
    x = np.random.default_rng(0).standard_normal((50, DIM)).astype(np.float32)
    q = x[:3] + 0.1
    for metric in ("l2", "ip", "cosine"):
        name = _name(request, made) + metric
        made.append(name)
        _collection(c, name, metric=metric)
        _insert(c, name, x)
        with mc.translate_errors("search"):
            res = c.search(name, q, limit=5, search_params={"params": {}})
        for qi, hits in enumerate(res):
            keys = np.asarray(hits.ids)
            scores = mc.scores_from_distances(hits.distances, metric)
            if metric == "l2":  # Milvus returns the squared distance
                exact = -((x[keys] - q[qi]) ** 2).sum(1)
            elif metric == "ip":
                exact = x[keys] @ q[qi]
            else:
                exact = (x[keys] @ q[qi]) / np.linalg.norm(x[keys], axis=1) / np.linalg.norm(q[qi])
            np.testing.assert_allclose(scores, exact, rtol=1e-4, atol=1e-4)
            assert (np.diff(scores) <= 1e-6).all()  # best first


def test_every_uint64_id_is_a_primary_key(client, request):
    c, made, _ = client
    name = _name(request, made)
    _collection(c, name)
    ids = np.array([0, 7, 2**63 - 1, 2**63, 2**64 - 2], dtype=np.uint64)
    x = np.random.default_rng(1).standard_normal((ids.size, DIM)).astype(np.float32)
    _insert(c, name, x, mc.ids_to_pks(ids).tolist())
    pks = mc.ids_to_pks(ids)
    rows = c.query(name, filter=mc.pk_filter("key", pks), output_fields=["key"])
    assert sorted(mc.pks_to_ids([r["key"] for r in rows]).tolist()) == sorted(ids.tolist())
    for some in ([2**63 - 1], [2**63 - 1, 7], [0, 2**64 - 2], [2**63]):
        f = mc.pk_filter("key", mc.ids_to_pks(np.array(some, dtype=np.uint64)))
        got = mc.pks_to_ids([r["key"] for r in c.query(name, filter=f, output_fields=["key"])])
        assert sorted(got.tolist()) == sorted(some), f
        f = mc.pk_filter("key", mc.ids_to_pks(np.array(some, dtype=np.uint64)), negate=True)
        got = mc.pks_to_ids([r["key"] for r in c.query(name, filter=f, output_fields=["key"])])
        assert sorted(got.tolist()) == sorted(set(ids.tolist()) - set(some)), f
    for i, id_ in enumerate(ids.tolist()):
        res = c.search(name, x[i:i + 1], limit=1, search_params={"params": {}})
        assert mc.pks_to_ids(res[0].ids).tolist() == [id_]


@pytest.mark.parametrize("index_type", list(mc.INDEX_TYPES))
def test_lite_really_builds_each_allowed_type(client, request, index_type):
    """describe_index shows what was asked (build params included), and after flush()
    searches are served by the built index: IVF with nprobe=1 loses recall."""
    c, made, lite = client
    name = _name(request, made)
    build = {"nlist": 16} if index_type.startswith("IVF") else (
        {"M": 8, "efConstruction": 40} if index_type == "HNSW" else {})
    _collection(c, name, index_type, build)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, DIM)).astype(np.float32)
    q = rng.standard_normal((20, DIM)).astype(np.float32)
    _insert(c, name, x)
    mc.flush(c, name, lite=lite)
    desc = c.describe_index(name, "vector")
    assert desc["index_type"] == index_type
    got_params = desc.get("params", {})
    for key, value in build.items():
        assert int(got_params[key]) == value
    if lite and index_type.startswith("IVF"):
        exact = np.argsort(((q[:, None] - x[None]) ** 2).sum(-1), 1)[:, :10]
        res = c.search(name, q, limit=10, search_params=mc.search_params(index_type,
                                                                          {"nprobe": 1}))
        recall = np.mean([len(set(h.ids) & set(e)) / 10 for h, e in zip(res, exact,
                                                                         strict=True)])
        assert recall < 0.9  # one list of 16 probed: the index is in use


# --------------------------------------------------------------------------- errors
def test_nothing_listening_is_service_unavailable():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(vc.ServiceUnavailableError, match=uri) as err:
        mc.connect(uri, timeout=1)
    assert isinstance(err.value, ConnectionError) and err.value.__cause__ is not None


def test_translate_errors_backend_and_passthrough(milvus_uri):
    c = mc.connect(milvus_uri)
    try:
        with (pytest.raises(vc.BackendError, match="search collection 'absent'") as err,
              mc.translate_errors("search collection 'absent'")):
            c.search("absent", [[0.0] * DIM], limit=1)
        assert not isinstance(err.value, vc.ServiceUnavailableError)
        assert err.value.__cause__ is not None
        with pytest.raises(vc.DimensionMismatchError), mc.translate_errors("x"):
            raise vc.DimensionMismatchError("ours")
        with pytest.raises(vc.BackendError, match="do it: boom"), mc.translate_errors("do it"):
            raise RuntimeError("boom")
    finally:
        mc.disconnect(c)


def test_connect_validates_arguments(tmp_path):
    with pytest.raises(vc.InvalidArgumentError, match="timeout"):
        mc.connect(tmp_path / "a.db", timeout=0)
    with pytest.raises(vc.InvalidArgumentError, match="token must be a string"):
        mc.connect(tmp_path / "a.db", token=5)
    with pytest.raises(vc.InvalidArgumentError, match="secure must be a bool"):
        mc.connect(tmp_path / "a.db", secure="yes")
    with pytest.raises(vc.InvalidArgumentError, match="does not exist"):
        mc.connect(tmp_path / "missing" / "a.db")


def test_credentials_and_tls_pass_through(milvus_server):
    uri = milvus_server.uri
    c = mc.connect(uri, user="root", password="Milvus", db_name="default", timeout=5)
    try:
        assert isinstance(c.list_collections(), list)
    finally:
        mc.disconnect(c)
    # TLS settings reach the channel: this server speaks plain gRPC, so a TLS handshake fails
    with pytest.raises(vc.ServiceUnavailableError, match=uri):
        mc.connect(uri, secure=True, timeout=1)


# --------------------------------------------------------------------------- lite sharing
def test_lite_same_database_twice_in_one_process_is_shared(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    path = str(tmp_path / "real" / "a.db")
    a = mc.connect(path)
    b = mc.connect(tmp_path / "alias" / "a.db")  # the same directory, spelled differently
    try:
        _collection(a, "shared")
        assert "shared" in b.list_collections()
        mc.disconnect(a)
        mc.disconnect(a)  # idempotent
        assert "shared" in b.list_collections()  # the other client keeps working
        assert mc.lite_is_open(path)
    finally:
        mc.disconnect(b)
    assert not mc.lite_is_open(path)  # the last client closed: lock released
    c = mc.connect(path)
    try:
        assert "shared" in c.list_collections()  # and the data is still there
    finally:
        mc.disconnect(c)


def test_lite_database_held_by_another_process(tmp_path):
    path = str(tmp_path / "held.db")
    code = textwrap.dedent(f"""
        import sys
        from vecindex_core.milvus import client as mc
        c = mc.connect({path!r})
        c.list_collections()
        print("ready", flush=True)
        sys.stdin.read()
        mc.disconnect(c)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(vc.ServiceUnavailableError, match="open in another process"):
            mc.connect(path)
        with pytest.raises(vc.ServiceUnavailableError, match="another process"):
            idx = vc.create("milvus", dim=4, uri=path)
            idx.add(np.ones((1, 4)))
            idx.search(np.ones(4), 1)
    finally:
        child.stdin.close()
        child.wait(60)
    assert child.returncode == 0
    c = mc.connect(path)  # free again
    mc.disconnect(c)
