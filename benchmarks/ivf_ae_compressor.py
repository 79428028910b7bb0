"""Which learned compressor for ``ivf_ae``: similarity distillation or fast-ivf's cell bottleneck.

Usage (from the repository root)::

    python benchmarks/ivf_ae_compressor.py [DATA] [--dims 96,48] [--threads 2] [--repeats 3]
        [--fast-ivf-python /path/to/python]

``DATA`` defaults to ``../shared/data/dev`` (20,000 x 384 unit-norm MiniLM embeddings, 500
queries with exact inner-product top-100). For every code size (384 -> 96 is 4x, -> 48 is 8x)
each compressor is trained on the base and measured by recall@10 against the exact
ground truth in three ways:

- **flat**: exact top-10 by ``<enc(q), enc(x)>`` over all compressed base vectors, and the
  same with an exact rerank by ``<q, x>`` of the top 50 and top 100 (``rr50``, ``rr100``);
- **ivf**: k-means cells on the originals (``faiss.Kmeans(384, 256, niter=20, seed=1)``, used
  here only to get cells; rows and queries assigned by faiss' L2 search), ``nprobe`` 16 and 32,
  the probed rows scored by their codes (``ivf16``, ``ivf32``) and, with rerank of the top
  100 by the originals, ``ivf16+rr100``, ``ivf32+rr100``.

Entries: ``pca`` (top principal directions, uncentred; raw and with unit-norm codes, the
strong cheap baseline) and :func:`vecindex_core.compress.train_compressor` with objective
``autoencoder`` (losses ``similarity`` = the default, ``gram``, ``reconstruction``, and the
default with batches of 512 instead of 1024, or with a 512-wide hidden layer) and ``cell``
(fast-ivf's bottleneck trained to predict the cell, on the same faiss cells). Training time
is the median of ``--repeats`` trainings (the repeats must give identical weights: recorded
as ``deterministic``), at ``--threads`` threads; the default autoencoder is also timed at
``--threads-2`` threads (``train_s_threads2``). The ``uncompressed`` row is the same IVF over
the original vectors (the ceiling of ``ivf*``).

Peers, in a subprocess of ``--fast-ivf-python`` (default ``$FAST_IVF_PYTHON``, else this
interpreter), on the same arrays: fast-ivf's ``FastIVF(384, nlist=256)`` over the
uncompressed vectors and ``CompressedFastIVF(384, nlist=256, compression_ndim=c)`` (its own
mini-batch k-means and TensorFlow ``TFCentroidCompressor``; ``compressor_steps_per_epoch=-1``,
i.e. one pass over the data per epoch, 10 epochs, unless ``--fast-ivf-steps``), at nprobe 16/32
with ``ratio_threshold`` 0 (plain nprobe, comparable with ours) and 0.5 (its default), compressed
and with ``rescore=True`` of the top 100. fast-ivf 1.0.1 needs Keras 2: the subprocess sets
``TF_USE_LEGACY_KERAS=1`` (package ``tf-keras``). Its numba kernels need scipy. A peer that
cannot run is recorded as skipped with the reason.

Writes ``ivf_ae_compressor.{json,md}`` to ``benchmarks/results/``. The lead's decision rule:
keep as ``train_compressor``'s default the objective with the better recall at both sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
NLIST = 256
NPROBES = (16, 32)
RERANKS = (50, 100)
K = 10


def log(msg: str) -> None:
    print(msg, flush=True)


def recall(found: np.ndarray, gt: np.ndarray, k: int = K) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k
                          for f, t in zip(found, gt, strict=True)]))


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, idx, 1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1)


def rerank(q: np.ndarray, x: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Reorder candidate rows (nq, m) by the exact inner product; -1 pads sort last."""
    s = np.einsum("qd,qkd->qk", q, x[np.maximum(cand, 0)])
    s[cand < 0] = -np.inf
    return np.take_along_axis(cand, np.argsort(-s, axis=1, kind="stable"), 1)


# --------------------------------------------------------------------------- our side
class Cells:
    """The faiss k-means cells on the originals and each query's probe order."""

    def __init__(self, base: np.ndarray, queries: np.ndarray, seed: int = 1) -> None:
        import faiss

        t0 = time.perf_counter()
        km = faiss.Kmeans(base.shape[1], NLIST, niter=20, seed=seed)
        km.train(base)
        self.train_s = time.perf_counter() - t0
        self.centroids = km.centroids.copy()
        self.labels = km.index.search(base, 1)[1][:, 0].astype(np.int64)
        self.probes = km.index.search(queries, max(NPROBES))[1]
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(NLIST + 1))
        self.lists = [order[bounds[c]:bounds[c + 1]] for c in range(NLIST)]

    def search(self, zq: np.ndarray, zx: np.ndarray, nprobe: int, k: int,
               l2: bool = False) -> np.ndarray:
        out = np.full((zq.shape[0], k), -1, dtype=np.int64)
        for i in range(zq.shape[0]):
            rows = np.concatenate([self.lists[c] for c in self.probes[i, :nprobe]])
            s = zx[rows] @ zq[i]
            if l2:
                s = 2 * s - np.einsum("ij,ij->i", zx[rows], zx[rows])
            top = topk(s[None, :], k)[0]
            out[i, :top.shape[0]] = rows[top]
        return out


def measure(zq: np.ndarray, zx: np.ndarray, q: np.ndarray, x: np.ndarray, gt: np.ndarray,
            cells: Cells) -> dict[str, float]:
    """recall@10 of flat and IVF search over codes, with and without exact rerank."""
    s = zq @ zx.T
    top = topk(s, max(RERANKS))
    r = {"flat": recall(top, gt)}
    for rr in RERANKS:
        r[f"rr{rr}"] = recall(rerank(q, x, top[:, :rr]), gt)
    for p in NPROBES:
        found = cells.search(zq, zx, p, max(RERANKS))
        r[f"ivf{p}"] = recall(found, gt)
        r[f"ivf{p}+rr100"] = recall(rerank(q, x, found[:, :100]), gt)
    return r


def pca_codes(x: np.ndarray, q: np.ndarray, c: int,
              normalize: bool) -> tuple[np.ndarray, np.ndarray, float]:
    t0 = time.perf_counter()
    gram = (x.T @ x).astype(np.float64) / x.shape[0]
    _, vecs = np.linalg.eigh(gram)
    w = np.ascontiguousarray(vecs[:, ::-1][:, :c], dtype=np.float32)
    zx = x @ w
    if normalize:
        zx /= np.linalg.norm(zx, axis=1, keepdims=True)
    t = time.perf_counter() - t0
    return q @ w, zx, t


#: (label, train_compressor keyword arguments) of the learned entries
LEARNED: tuple[tuple[str, dict[str, Any]], ...] = (
    ("autoencoder (similarity, default)", {"objective": "autoencoder"}),
    ("autoencoder (similarity, batch 512)", {"objective": "autoencoder", "batch_size": 512}),
    ("autoencoder (similarity, hidden 512)", {"objective": "autoencoder", "hidden_dim": 512}),
    ("autoencoder (gram)", {"objective": "autoencoder", "autoencoder_loss": "gram"}),
    ("autoencoder (reconstruction)",
     {"objective": "autoencoder", "autoencoder_loss": "reconstruction"}),
    ("cell (fast-ivf bottleneck)", {"objective": "cell"}),
)


def run_ours(x: np.ndarray, q: np.ndarray, gt: np.ndarray, dims: list[int], cells: Cells,
             repeats: int, threads2: int) -> list[dict[str, Any]]:
    from vecindex_core.bench.runner import pinned_threads
    from vecindex_core.compress import train_compressor

    rows: list[dict[str, Any]] = []
    rows.append({"dim": x.shape[1], "entry": "uncompressed (same IVF, original vectors)",
                 "train_s": None, **measure(q, x, q, x, gt, cells)})
    log(f"  {rows[-1]}")
    for c in dims:
        for normalize in (False, True):
            zq, zx, t = pca_codes(x, q, c, normalize)
            rows.append({"dim": c, "entry": "pca" + (" (unit-norm codes)" if normalize else ""),
                         "train_s": round(t, 3), **measure(zq, zx, q, x, gt, cells)})
            log(f"  {rows[-1]}")
        for label, kw in LEARNED:
            if kw["objective"] == "cell":
                kw = {**kw, "labels": cells.labels}
            times, comps = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                comps.append(train_compressor(x, c, metric="cosine", seed=0, **kw))
                times.append(time.perf_counter() - t0)
            same = all(np.array_equal(a, b) for other in comps[1:]
                       for a, b in zip(comps[0].weights, other.weights, strict=True))
            comp = comps[0]
            t0 = time.perf_counter()
            zx = comp.encode(x)
            encode_s = time.perf_counter() - t0
            zq = comp.encode(q)
            row: dict[str, Any] = {
                "dim": c, "entry": label, "train_s": round(statistics.median(times), 3),
                "train_s_all": [round(t, 3) for t in times], "deterministic": same,
                "encode_base_s": round(encode_s, 4)}
            if label == LEARNED[0][0] and threads2:
                times2 = []
                with pinned_threads(threads2):
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        other = train_compressor(x, c, metric="cosine", seed=0, **kw)
                        times2.append(time.perf_counter() - t0)
                row[f"train_s_threads{threads2}"] = round(statistics.median(times2), 3)
                row[f"same_weights_threads{threads2}"] = all(
                    np.array_equal(a, b) for a, b in zip(comp.weights, other.weights, strict=True))
            rows.append(row | measure(zq, zx, q, x, gt, cells))
            log(f"  {rows[-1]}")
    return rows


# --------------------------------------------------------------------------- fast-ivf worker
def worker(data: Path, out: Path, dims: list[int], threads: int, steps: int) -> None:
    """Run fast-ivf on the arrays in ``data`` (npz) and write results JSON to ``out``.

    Imports only numpy and fast_ivf (plus tensorflow for the compressed index), so it runs
    in a separate interpreter that has TensorFlow.
    """
    import contextlib
    import functools
    import io

    arrays = np.load(data)
    x, q, gt = arrays["base"], arrays["queries"], arrays["gt"]
    res: dict[str, Any] = {"rows": [], "skipped": {}}
    try:
        from importlib.metadata import version

        import fast_ivf
        from fast_ivf import FastIVF

        res["fast_ivf_version"] = getattr(fast_ivf, "__version__", None) or version("fast-ivf")
        t0 = time.perf_counter()
        idx = FastIVF(x.shape[1], nlist=NLIST, nprobe=16)
        idx.train(x)
        build = time.perf_counter() - t0
        for p in NPROBES:
            for ratio in (0.0, 0.5):
                idx.nprobe, idx.ratio_threshold = p, ratio
                _, ids = idx.search(q, k=K)
                res["rows"].append({"entry": "fast-ivf FastIVF (uncompressed)", "dim": x.shape[1],
                                    "nprobe": p, "ratio_threshold": ratio,
                                    "build_s": round(build, 2),
                                    "recall": recall(np.asarray(ids), gt)})
    except Exception as e:  # a peer that cannot run is reported, never fatal
        res["skipped"]["FastIVF"] = f"{type(e).__name__}: {e}"
    try:
        import tensorflow as tf
        from fast_ivf import CompressedFastIVF
        from fast_ivf.tf_compressor import TFCentroidCompressor

        res["tensorflow_version"] = tf.__version__
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.keras.utils.set_random_seed(0)
        # its progress bars only: fit(..., verbose=0)
        TFCentroidCompressor.train = functools.partialmethod(  # type: ignore[method-assign]
            TFCentroidCompressor.train, verbose=0)
        for c in dims:
            t0 = time.perf_counter()
            idx = CompressedFastIVF(x.shape[1], nlist=NLIST, compression_ndim=c, nprobe=16,
                                    compressor_steps_per_epoch=steps)
            with contextlib.redirect_stdout(io.StringIO()):
                idx.train(x)
            build = time.perf_counter() - t0
            for p in NPROBES:
                for ratio in (0.0, 0.5):
                    idx.nprobe, idx.ratio_threshold = p, ratio
                    _, ids = idx.search(q, k=K)
                    _, rids = idx.search(q, k=100, rescore=True)
                    res["rows"].append({
                        "entry": "fast-ivf CompressedFastIVF", "dim": c, "nprobe": p,
                        "ratio_threshold": ratio, "build_s": round(build, 2),
                        "compressor_steps_per_epoch": steps,
                        "recall": recall(np.asarray(ids), gt),
                        "recall_rescore100": recall(
                            np.array([np.asarray(r)[:K] for r in rids]), gt)})
    except Exception as e:
        res["skipped"]["CompressedFastIVF"] = f"{type(e).__name__}: {e}"
    out.write_text(json.dumps(res))


def run_fast_ivf(python: str, x: np.ndarray, q: np.ndarray, gt: np.ndarray, dims: list[int],
                 threads: int, steps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.npz", Path(tmp) / "out.json"
        np.savez(data, base=x, queries=q, gt=gt)
        env = {**os.environ, "TQDM_DISABLE": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
               "TF_USE_LEGACY_KERAS": "1", "OMP_NUM_THREADS": str(threads),
               "NUMBA_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
        cmd = [python, str(Path(__file__).resolve()), "--worker", str(data), str(out),
               "--dims", ",".join(map(str, dims)), "--threads", str(threads),
               "--fast-ivf-steps", str(steps)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            return {"rows": [], "skipped": {"fast-ivf": f"worker exited {proc.returncode}: "
                                            f"{proc.stderr.strip()[-600:]}"}}
        res: dict[str, Any] = json.loads(out.read_text())
        res["python"] = python
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        return res


# --------------------------------------------------------------------------- report
NOTES = """Method. All learned encoders are linear (384 -> c) initialised from the uncentred PCA
directions, with unit-norm codes (the cosine metric); `hidden 512` adds a ReLU residual branch.
`similarity` = KL between the softmax (temperature 0.05) over the other rows of a batch of the
codes' inner products and of the originals' (100 Adam steps, batch 1024, lr 3e-3); `gram` =
MSE between the two similarity matrices; `reconstruction` = MSE of a linear decoder back to 384.
`cell` = fast-ivf's bottleneck: code layer -> ReLU -> softmax over the 256 faiss cells,
cross-entropy with label smoothing 0.01, input dropout 0.2 (1,500 Adam steps, batch 256, lr
5e-3, one thread). fast-ivf CompressedFastIVF trains the same architecture in TensorFlow on its
own k-means cells (compressor_steps_per_epoch=-1: 10 passes of batch 128)."""

COLS = ("flat", "rr50", "rr100", "ivf16", "ivf32", "ivf16+rr100", "ivf32+rr100")


def decide(rows: list[dict[str, Any]], dims: list[int]) -> dict[str, Any]:
    """Compare the default autoencoder with the cell objective and PCA at every size."""
    out: dict[str, Any] = {}
    for c in dims:
        by = {r["entry"]: r for r in rows if r["dim"] == c}
        ae, cell = by[LEARNED[0][0]], by[LEARNED[-1][0]]
        pca = by["pca (unit-norm codes)"]
        out[str(c)] = {col: {"autoencoder": ae[col], "cell": cell[col], "pca": pca[col]}
                       for col in COLS}
        out[str(c)]["autoencoder_beats_cell_everywhere"] = all(
            ae[col] > cell[col] for col in COLS)
        out[str(c)]["autoencoder_vs_pca_flat"] = round(ae["flat"] - pca["flat"], 4)
    winner = "autoencoder" if all(out[str(c)]["autoencoder_beats_cell_everywhere"]
                                  for c in dims) else "undecided"
    out["default_objective"] = winner
    return out


def markdown(res: dict[str, Any]) -> str:
    ds = res["dataset"]
    lines = [
        "# ivf_ae compressor: autoencoder vs cell bottleneck",
        "",
        f"Data `{ds['name']}`: {ds['n']:,} x {ds['dim']} base, {ds['queries']} queries, "
        f"recall@{K} against the exact inner-product top-{K}. {res['threads']} thread(s) "
        f"pinned; load average at start {res['loadavg']['start']} (the 2 cores are shared, "
        "so times are indicative). Cells: faiss.Kmeans(384, 256, niter=20, seed=1) on the "
        "originals. `flat` = exact top-10 by code inner product; `rrN` = its top N "
        "reranked by `<q, x>`; `ivfP` = nprobe P over the cells, probed rows scored by "
        "code; `+rr100` = top 100 of that reranked. Train time: median of "
        f"{res['repeats']} trainings (`deterministic` = identical weights each time).",
        "",
        "| dim | entry | train s | " + " | ".join(COLS) + " |",
        "|---:|---|---:|" + "---:|" * len(COLS),
    ]
    for r in res["ours"]:
        t = "" if r["train_s"] is None else f"{r['train_s']:.2f}"
        if r.get("deterministic") is False:
            t += " (not deterministic!)"
        lines.append(f"| {r['dim']} | {r['entry']} | {t} | "
                     + " | ".join(f"{r[c]:.3f}" for c in COLS) + " |")
    t2 = res["args"]["threads_2"]
    for r in res["ours"]:
        if f"train_s_threads{t2}" in r:
            lines.append(f"\n{r['entry']} at dim {r['dim']} on {t2} threads: train "
                         f"{r[f'train_s_threads{t2}']:.2f} s, same weights as on "
                         f"{res['threads']}: {r[f'same_weights_threads{t2}']}.")
    fi = res["fast_ivf"]
    lines += ["", "## fast-ivf (subprocess with TensorFlow, same arrays)", ""]
    if fi.get("rows"):
        lines += [f"fast-ivf {fi.get('fast_ivf_version')}, TensorFlow "
                  f"{fi.get('tensorflow_version')} (Keras 2 via tf-keras); its own mini-batch "
                  "k-means (nlist 256) and search. Build = k-means + compressor training + "
                  "adding.", "",
                  "| entry | dim | nprobe | ratio_threshold | build s | recall@10 | "
                  "rescore top 100 |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in fi["rows"]:
            rr = r.get("recall_rescore100")
            lines.append(f"| {r['entry']} | {r['dim']} | {r['nprobe']} | "
                         f"{r['ratio_threshold']} | {r['build_s']:.1f} | {r['recall']:.3f} | "
                         f"{'' if rr is None else f'{rr:.3f}'} |")
    for name, why in fi.get("skipped", {}).items():
        lines.append(f"- {name} skipped: {why}")
    d = res["decision"]
    lines += ["", "## Decision", "", f"Default objective: **{d['default_objective']}**.", ""]
    for c in res["dims"]:
        dd = d[str(c)]
        lines.append(f"- dim {c}: autoencoder beats cell on every column: "
                     f"{dd['autoencoder_beats_cell_everywhere']}; autoencoder - PCA (unit-norm "
                     f"codes) on flat recall: {dd['autoencoder_vs_pca_flat']:+.3f}")
    lines += ["", res.get("notes", "")]
    return "\n".join(lines) + "\n"


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV))
    p.add_argument("--dims", type=_ints, default=[96, 48])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--threads-2", type=int, default=2,
                   help="also time the default autoencoder at this many threads (0: skip)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fast-ivf-python", default=os.environ.get("FAST_IVF_PYTHON",
                                                               sys.executable))
    p.add_argument("--fast-ivf-steps", type=int, default=-1,
                   help="CompressedFastIVF compressor_steps_per_epoch (-1: one pass over "
                   "the data; its own default is 2000)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--worker", nargs=2, metavar=("DATA_NPZ", "OUT_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), args.dims, args.threads,
               args.fast_ivf_steps)
        return 0

    from vecindex_core.bench.env import environment_info
    from vecindex_core.bench.runner import pinned_threads
    from vecindex_core.datasets import load_dataset

    ds = load_dataset(args.data, gt_k=100)
    if ds.gt is None:
        p.error("the dataset has no ground truth")
    x = np.ascontiguousarray(ds.base, dtype=np.float32)
    q = np.ascontiguousarray(ds.queries, dtype=np.float32)
    gt = np.asarray(ds.gt)[:, :K]
    res: dict[str, Any] = {
        "dataset": {"name": ds.name, "n": int(x.shape[0]), "dim": int(x.shape[1]),
                    "queries": int(q.shape[0]), "metric": "cosine (unit-norm, gt by ip)"},
        "dims": args.dims, "threads": args.threads, "repeats": args.repeats,
        "args": {k: v for k, v in vars(args).items() if k != "worker"},
        "loadavg": {"start": os.getloadavg()},
    }
    t0 = time.perf_counter()
    with pinned_threads(args.threads):
        import faiss  # noqa: F401  (loaded before pinning reports it)

        cells = Cells(x, q)
        res["cells"] = {"nlist": NLIST, "kmeans_s": round(cells.train_s, 2),
                        "sizes_min_max": [int(min(map(len, cells.lists))),
                                          int(max(map(len, cells.lists)))]}
        log(f"cells: {res['cells']}")
        res["ours"] = run_ours(x, q, gt, args.dims, cells, args.repeats, args.threads_2)
        res["loadavg"]["ours end"] = os.getloadavg()
        import torch

        res["environment"] = environment_info() | {"torch": torch.__version__}
    log("fast-ivf ...")
    res["fast_ivf"] = run_fast_ivf(args.fast_ivf_python, x, q, gt, args.dims, args.threads,
                                   args.fast_ivf_steps)
    log(f"  {res['fast_ivf']}")
    res["loadavg"]["end"] = os.getloadavg()
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["decision"] = decide(res["ours"], args.dims)
    res["notes"] = NOTES
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ivf_ae_compressor.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    md = markdown(res)
    (out / "ivf_ae_compressor.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

