"""Binary hashing: ``simhash``, ``pcahash``, ``itq`` and ``lsh`` against faiss and autoindexers.

Usage (from the repository root, with vecindex installed or on ``PYTHONPATH``)::

    python benchmarks/hashing.py [DATA] [--queries 500] [--k 10] [--threads 1]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Everything runs in one process on the same arrays, metric ``ip``, with every
thread pool pinned (``vecindex_core.bench.runner.pinned_threads``). Sections:

1. **recall**: recall@k of ``simhash``, ``pcahash``, ``itq`` at 64/128/256 bits with rerank
   0/100/500 (``keep_vectors=true``), and ``lsh`` (8-bit keys, 8/16/32 tables = 64/128/256
   bits), against faiss ``IndexLSH(d, bits, rotate_data, train_thresholds)`` (all four
   combinations) and ``index_factory(d, "ITQ{bits},LSH")``; faiss rerank is
   ``IndexRefineFlat`` with ``k_factor = rerank / k`` (the same shortlist size). Batched QPS
   (best of ``--repeats`` after a warm-up) of every entry.
2. **hamming**: the Hamming scan alone, our ``hamming_topk`` over ``ITQIndex.codes`` vs
   ``faiss.IndexBinaryFlat`` over the same bytes (distances checked equal): batched QPS and
   single-query p50.
3. **lsh sweep**: positional ``LSHIndex`` over num_bits x num_tables x num_probes x rerank via
   ``search_stats``: recall, candidates and rows scored exactly per query, QPS; the settings
   with recall >= ``--lsh-recall`` scoring under ``--lsh-rows`` of the rows.
4. **train**: ITQ training (128 bits, 50 iterations, all rows), ours vs faiss, median of 3.
5. **memory**: ``memory_bytes()`` and code sizes of the four kinds (no kept vectors).
6. **autoindexers**: the ``autoindexers`` package of the ``autoencoders`` wheel (SimHash, PCA
   hash, ITQ, LSH indexers): recall and batched query speed next to ours.

A peer that is not installed is skipped with the reason. Writes ``hashing.{json,md}`` to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import vecindex_core
from vecindex_core._kernels.hamming import hamming_topk
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import (
    best_of,
    best_of_pair,
    ids64,
    log,
    median_latency_us,
    source_fingerprint,
    timed,
    write_results,
)
from vecindex_core.datasets import load_dataset

#: vecindex_core sources the results are tied to (sha256 prefixes in the JSON)
SOURCES = ["hashing.py", "_kernels/*.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
KINDS = ("simhash", "pcahash", "itq")
#: extra entries of the recall table: (label, spec template)
EXTRA = (
    ("simhash+median", "simhash(num_bits={bits},use_median_thresholds=true,keep_vectors=true)"),
)
FAISS_LSH = [(False, False), (False, True), (True, False), (True, True)]
LSH_KEY_BITS = 8  # bits per lsh table in the equal-bits comparison (~78 rows a bucket here)
#: end-to-end pairs timed alternately: (ours, faiss)
E2E_PAIRS = (("itq", "faiss ITQ,LSH"),
             ("simhash", "faiss.IndexLSH(rotate=True,thresholds=False)"))


# --------------------------------------------------------------------------- peers
def import_faiss() -> tuple[Any, str | None]:
    try:
        import faiss
    except ImportError as e:
        return None, f"faiss not importable: {e}"
    return faiss, None


def import_autoindexers() -> tuple[Any, str | None]:
    try:
        import autoindexers
        import torch  # noqa: F401 - autoindexers needs it; import errors surface here
    except Exception as e:  # any import-time failure, not only ImportError
        return None, f"autoindexers not importable: {type(e).__name__}: {e}"
    return autoindexers, None


# --------------------------------------------------------------------------- checks


def scan_layout(codes: np.ndarray) -> np.ndarray:
    """Row-major ``(n, words)`` codes in the layout ``hamming_topk`` takes, contiguous."""
    return np.ascontiguousarray(codes.T)


def sanity_checks() -> dict[str, Any]:
    """``hamming_topk`` against a numpy brute force (distances and the rows' distances)."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for w in (1, 2, 4, 16):
        codes = rng.integers(0, 2**63, size=(3000, w), dtype=np.uint64)
        qc = rng.integers(0, 2**63, size=(7, w), dtype=np.uint64)
        full = np.bitwise_count(qc[:, None, :] ^ codes[None]).sum(-1)
        for k in (10, 40):
            dist, slots = hamming_topk(qc, scan_layout(codes), k, max_bits=64 * w)
            ok = (np.array_equal(np.sort(full, 1)[:, :k], dist) and (slots >= 0).all()
                  and np.array_equal(np.take_along_axis(full, np.maximum(slots, 0), 1), dist))
            out[f"hamming_topk w={w} k={k}"] = bool(ok)
    return out


# --------------------------------------------------------------------------- 1. recall
def section_recall(ds: Any, args: argparse.Namespace, faiss: Any) -> dict[str, Any]:
    x, q, gt, k = ds.base, ds.queries, ds.gt, args.k
    d = x.shape[1]
    rows: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    searchers: dict[tuple[str, int], Callable[[np.ndarray], np.ndarray]] = {}

    def measure(entry: str, family: str, bits: int, rerank: int, build_s: float,
                search: Callable[[np.ndarray], np.ndarray], **extra: Any) -> None:
        if entry in {o for pair in E2E_PAIRS for o in pair}:
            searchers[(entry, rerank)] = search
        found = search(q)
        rec = recall_at_k(found, gt, k)
        best, times = best_of(lambda: search(q), args.repeats)
        rows.append({"entry": entry, "family": family, "bits": bits, "rerank": rerank,
                     "recall": rec, "qps": q.shape[0] / best, "times_s": times,
                     "build_s": build_s, **extra})
        log(f"  {entry:<44} bits={bits:<4} rerank={rerank:<4} recall@{k}={rec:.4f} "
            f"QPS={q.shape[0] / best:,.0f}")

    log("[1/6] recall table")
    faiss_info: dict[str, Any] = {}
    skipped = "faiss missing" if faiss is None else None
    for bits in args.bits:  # ours and faiss at one code size measured close in time
        specs = [(kind, f"{kind}(num_bits={bits},keep_vectors=true)") for kind in KINDS]
        specs += [(label, tpl.format(bits=bits)) for label, tpl in EXTRA]
        for kind, spec in specs:
            idx = vecindex_core.create(spec, dim=d, metric="ip")
            build_s, _ = timed(lambda idx=idx: idx.add(x))
            for r in args.reranks:
                measure(kind, "ours", bits, r, build_s,
                        lambda qq, idx=idx, r=r: ids64(
                            idx.search(qq, k, params={"rerank": r}).ids),
                        spec=spec)
        tables = bits // LSH_KEY_BITS
        spec = f"lsh(num_bits={LSH_KEY_BITS},num_tables={tables},keep_vectors=true)"
        idx = vecindex_core.create(spec, dim=d, metric="ip")
        build_s, _ = timed(lambda idx=idx: idx.add(x))
        inner = idx.index
        qp = inner.prepare(q)
        for probes in args.lsh_table_probes:
            for r in args.reranks:
                sp = {"num_probes": probes, "rerank": r}
                _, cand = inner.search_stats(qp, k, params=sp)
                ok = cand >= 0
                measure(f"lsh {LSH_KEY_BITS}x{tables} p{probes}", "ours-lsh", bits, r, build_s,
                        lambda qq, idx=idx, sp=sp: ids64(idx.search(qq, k, params=sp).ids),
                        spec=spec, num_probes=probes,
                        mean_candidates=float(cand[ok].mean()) if ok.any() else None,
                        fallback_queries=int((~ok).sum()))
        if faiss is None:
            continue
        for rot, thr in FAISS_LSH:
            base = faiss.IndexLSH(d, bits, rot, thr)
            refine = faiss.IndexRefineFlat(base)
            build_s, _ = timed(lambda refine=refine: (refine.train(x), refine.add(x)))
            name = f"faiss.IndexLSH(rotate={rot},thresholds={thr})"
            run_faiss(measure, faiss, name, bits, base, refine, build_s, args)
        base = faiss.index_factory(d, f"ITQ{bits},LSH")
        refine = faiss.IndexRefineFlat(base)
        build_s, _ = timed(lambda refine=refine: (refine.train(x), refine.add(x)))
        vt = faiss.downcast_VectorTransform(base.chain.at(0))
        faiss_info[f"ITQ{bits}"] = {
            "itq_max_iter": int(vt.itq.max_iter), "itq_seed": int(vt.itq.seed),
            "do_pca": bool(vt.do_pca), "max_train_per_dim": int(vt.max_train_per_dim),
            "refine_metric": int(refine.refine_index.metric_type),
        }
        run_faiss(measure, faiss, "faiss ITQ,LSH", bits, base, refine, build_s, args)
        for ours_e, theirs_e in E2E_PAIRS:  # alternated timing: noise hits both sides
            for r in args.reranks:
                a, b = searchers.get((ours_e, r)), searchers.get((theirs_e, r))
                if a is None or b is None:
                    continue
                ta, tb = best_of_pair(lambda a=a: a(q), lambda b=b: b(q), args.repeats)
                pairs.append({"bits": bits, "rerank": r, "ours": ours_e, "faiss": theirs_e,
                              "ours_qps": q.shape[0] / min(ta), "faiss_qps": q.shape[0] / min(tb),
                              "ratio": min(tb) / min(ta), "ours_times_s": ta, "faiss_times_s": tb})
                log(f"  paired {ours_e} vs {theirs_e} bits={bits} rerank={r}: "
                    f"{pairs[-1]['ratio']:.2f}x")
        searchers.clear()
    # seed spread of one data-oblivious kind, to read the deltas against
    spread = []
    for seed in range(5):
        idx = vecindex_core.create(f"simhash(num_bits=128,seed={seed})", dim=d, metric="ip")
        idx.add(x)
        spread.append(recall_at_k(ids64(idx.search(q, k).ids), gt, k))
    log(f"  simhash 128 bits rerank 0, seeds 0-4: {[round(s, 4) for s in spread]}")
    fspread = []  # and of its faiss counterpart, IndexLSH with a random rotation
    for seed in range(5) if faiss is not None else ():
        base = faiss.IndexLSH(d, 128, True, False)
        base.rrot.init(seed)
        base.add(x)
        fspread.append(recall_at_k(np.asarray(base.search(q, k)[1], np.int64), gt, k))
    log(f"  faiss IndexLSH(rotate) 128 bits, seeds 0-4: {[round(s, 4) for s in fspread]}")
    return {"rows": rows, "e2e_pairs": pairs, "simhash128_seed_recalls": spread,
            "faiss_lsh128_seed_recalls": fspread,
            "faiss_info": faiss_info, "faiss_skipped": skipped}


def run_faiss(measure: Callable[..., None], faiss: Any, name: str, bits: int, base: Any,
              refine: Any, build_s: float, args: argparse.Namespace) -> None:
    k = args.k
    for r in args.reranks:
        if r == 0:
            def search(qq: np.ndarray, base: Any = base) -> np.ndarray:
                return base.search(qq, k)[1]
        else:
            sp = faiss.IndexRefineSearchParameters(k_factor=r / k)

            def search(qq: np.ndarray, refine: Any = refine, sp: Any = sp) -> np.ndarray:
                return refine.search(qq, k, params=sp)[1]
        measure(name, "faiss", bits, r, build_s, search)


COUNTERPART = {"simhash": "faiss.IndexLSH", "pcahash": "faiss.IndexLSH", "itq": "faiss ITQ",
               "simhash+median": "faiss.IndexLSH"}


def verdicts(rec: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Ours vs faiss at equal bits and rerank: each of ours against the best faiss entry and
    against its counterpart (simhash, pcahash: best ``IndexLSH`` variant; itq: faiss ITQ),
    and the best of ours (``"best of ours"``) against the best faiss entry."""
    rows = rec["rows"]
    out = []

    def best(cands: list[dict[str, Any]]) -> dict[str, Any] | None:
        return max(cands, key=lambda x: x["recall"]) if cands else None

    for bits in args.bits:
        for r in args.reranks:
            cell = [x for x in rows if x["bits"] == bits and x["rerank"] == r]
            faiss_rows = [x for x in cell if x["family"] == "faiss"]
            best_f = best(faiss_rows)
            mine = [x for x in cell if x["family"] != "faiss"]
            best_o = best(mine)
            entries = [*mine, *([{**best_o, "entry": f"best of ours ({best_o['entry']})"}]
                                if best_o else [])]
            for x in entries:
                prefix = COUNTERPART.get(x["entry"])
                cp = best([f for f in faiss_rows if prefix and f["entry"].startswith(prefix)])
                delta = None if best_f is None else x["recall"] - best_f["recall"]
                cdelta = None if cp is None else x["recall"] - cp["recall"]
                out.append({
                    "bits": bits, "rerank": r, "ours": x["entry"], "ours_recall": x["recall"],
                    "best_faiss": None if best_f is None else best_f["entry"],
                    "faiss_recall": None if best_f is None else best_f["recall"],
                    "delta": delta,
                    "verdict": "n/a" if delta is None
                    else ("ours >= faiss" if delta >= 0 else "ours < faiss"),
                    "counterpart": None if cp is None else cp["entry"],
                    "counterpart_recall": None if cp is None else cp["recall"],
                    "counterpart_delta": cdelta,
                })
    return out


# --------------------------------------------------------------------------- 2. hamming
def section_hamming(ds: Any, args: argparse.Namespace, faiss: Any) -> dict[str, Any]:
    log("[2/6] Hamming scan")
    x, q, k = ds.base, ds.queries, args.k
    out: list[dict[str, Any]] = []
    for bits in args.bits:
        idx = vecindex_core.ITQIndex(x.shape[1], "ip", num_bits=bits)
        idx.train(x)
        idx.add(x)
        codes = np.array(idx.codes, order="C")  # row-major (n, words) copy, for faiss
        scanned = scan_layout(codes)  # the layout the kernel takes (as the index keeps it)
        qcodes = idx.encode(idx.prepare(q))
        row: dict[str, Any] = {"bits": bits, "words": codes.shape[1], "n": codes.shape[0]}

        def ours(qc: np.ndarray, scanned: np.ndarray = scanned, bits: int = bits) -> Any:
            return hamming_topk(qc, scanned, k, max_bits=bits)

        if faiss is not None:
            cu8 = codes.view(np.uint8)
            qu8 = np.ascontiguousarray(qcodes).view(np.uint8)
            fb = faiss.IndexBinaryFlat(bits)
            fb.add(cu8)

            def theirs(qc: np.ndarray, fb: Any = fb) -> Any:
                return fb.search(qc, k)

            # interleaved repeats: a noisy spell hits both sides
            times, times_f = best_of_pair(lambda ours=ours, qc=qcodes: ours(qc),
                                          lambda theirs=theirs, qc=qu8: theirs(qc),
                                          args.repeats)
            row["ours"] = {"qps": q.shape[0] / min(times), "times_s": times,
                           **median_latency_us(ours, qcodes, args.latency_queries)}
            row["faiss"] = {"qps": q.shape[0] / min(times_f), "times_s": times_f,
                            **median_latency_us(theirs, qu8, args.latency_queries)}
            od, os_ = ours(qcodes)
            fd, fi = theirs(qu8)
            # distance of faiss's rows recomputed from our uint64 words
            recomputed = np.bitwise_count(qcodes[:, None, :] ^ codes[fi]).sum(-1)
            row["check"] = {
                "faiss_distances_equal_recomputed": bool(np.array_equal(recomputed, fd)),
                "topk_distances_equal": bool(np.array_equal(od, fd)),
                "same_ids_fraction": float(np.mean(os_ == fi)),
                "same_id_sets_fraction": float(np.mean(
                    [set(a) == set(b) for a, b in zip(os_.tolist(), fi.tolist(), strict=True)])),
            }
            row["qps_ratio"] = row["ours"]["qps"] / row["faiss"]["qps"]
            row["p50_ratio"] = row["ours"]["p50_us"] / row["faiss"]["p50_us"]
            log(f"  bits={bits}: ours {row['ours']['qps']:,.0f} QPS p50 "
                f"{row['ours']['p50_us']:.0f} µs | faiss {row['faiss']['qps']:,.0f} QPS p50 "
                f"{row['faiss']['p50_us']:.0f} µs | QPS ratio {row['qps_ratio']:.2f}x "
                f"| check {row['check']}")
        else:
            best, times = best_of(lambda ours=ours, qcodes=qcodes: ours(qcodes), args.repeats)
            row["ours"] = {"qps": q.shape[0] / best, "times_s": times,
                           **median_latency_us(ours, qcodes, args.latency_queries)}
            row["faiss"] = "skipped: faiss missing"
        out.append(row)
    return {"rows": out}


# --------------------------------------------------------------------------- 3. lsh sweep
def section_lsh(ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    log("[3/6] LSH sweep")
    x, q, gt, k = ds.base, ds.queries, ds.gt, args.k
    n = x.shape[0]
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    t_start = time.perf_counter()
    for bits in args.lsh_bits:
        for tables in args.lsh_tables:
            if time.perf_counter() - t_start > args.lsh_budget:
                skipped.append(f"num_bits={bits} num_tables={tables}: time budget spent")
                continue
            idx = vecindex_core.LSHIndex(x.shape[1], "ip", num_bits=bits, num_tables=tables)
            build_s, _ = timed(lambda idx=idx: idx.add(x))
            qp = idx.prepare(q)
            too_slow = False
            for probes in args.lsh_probes:
                for r in args.lsh_reranks:
                    if too_slow or time.perf_counter() - t_start > args.lsh_budget:
                        skipped.append(f"num_bits={bits} num_tables={tables} "
                                       f"num_probes={probes} rerank={r}: "
                                       + ("too slow" if too_slow else "time budget spent"))
                        continue
                    params = {"num_probes": probes, "rerank": r}

                    def run(idx: Any = idx, qp: np.ndarray = qp, params: dict = params) -> Any:
                        return idx.search_stats(qp, k, params=params)

                    t1, (res_r, cand) = timed(run)
                    slots = res_r.ids
                    times = [t1]
                    if t1 < 0.5:
                        for _ in range(2):
                            times.append(timed(run)[0])
                    ok = cand >= 0
                    fb_rows = min(max(r, 4 * k), n)  # rows rescored by the fallback
                    scored = np.where(ok, cand if r == 0 else np.minimum(cand, r), fb_rows)
                    row = {
                        "num_bits": bits, "num_tables": tables, "num_probes": probes,
                        "rerank": r, "recall": recall_at_k(slots, gt, k),
                        "mean_candidates": float(cand[ok].mean()) if ok.any() else None,
                        "fallback_queries": int((~ok).sum()),
                        "mean_rows_scored": float(scored.mean()),
                        "max_rows_scored": int(scored.max()),
                        "fraction_scored": float(scored.mean() / n),
                        "qps": q.shape[0] / min(times), "times_s": times, "build_s": build_s,
                    }
                    rows.append(row)
                    log(f"  b={bits:<2} L={tables:<2} p={probes:<2} r={r:<4} "
                        f"recall={row['recall']:.4f} cand={row['mean_candidates'] or 0:,.0f} "
                        f"scored={row['mean_rows_scored']:,.0f} QPS={row['qps']:,.0f} "
                        f"fallback={row['fallback_queries']}")
                    if t1 > args.lsh_slow:
                        too_slow = True
    meets = [r for r in rows
             if r["recall"] >= args.lsh_recall and r["mean_rows_scored"] < args.lsh_rows * n]
    meets.sort(key=lambda r: -r["qps"])
    strict = [r for r in meets if r["mean_candidates"] is not None
              and r["mean_candidates"] < args.lsh_rows * n]
    return {"rows": rows, "meets_bar": meets, "meets_bar_with_candidates": strict,
            "skipped": skipped,
            "bar": {"recall": args.lsh_recall, "rows_fraction": args.lsh_rows},
            "elapsed_s": time.perf_counter() - t_start}


# --------------------------------------------------------------------------- 4. train
def section_train(ds: Any, args: argparse.Namespace, faiss: Any) -> dict[str, Any]:
    log("[4/6] ITQ training")
    x = ds.base
    d, bits = x.shape[1], args.train_bits
    out: dict[str, Any] = {"bits": bits, "n": x.shape[0]}
    ours_t = []
    for _ in range(3):
        idx = vecindex_core.ITQIndex(d, "ip", num_bits=bits)
        ours_t.append(timed(lambda idx=idx: idx.train(x))[0])
    out["ours"] = {"median_s": float(np.median(ours_t)), "times_s": ours_t,
                   "iterations": int(idx.params["num_iterations"]),
                   "train_rows": x.shape[0]}
    log(f"  ours: {ours_t}")
    if faiss is None:
        out["faiss"] = "skipped: faiss missing"
        return out
    f_t = []
    for _ in range(3):
        fi = faiss.index_factory(d, f"ITQ{bits},LSH")
        f_t.append(timed(lambda fi=fi: fi.train(x))[0])
    vt = faiss.downcast_VectorTransform(fi.chain.at(0))
    # ITQTransform::train subsamples to max(d_in * max_train_per_dim, 32768) rows
    cap = max(d * int(vt.max_train_per_dim), 32768)
    out["faiss"] = {"median_s": float(np.median(f_t)), "times_s": f_t,
                    "iterations": int(vt.itq.max_iter),
                    "train_rows": min(x.shape[0], cap), "max_train_per_dim":
                    int(vt.max_train_per_dim), "do_pca": bool(vt.do_pca)}
    out["ratio"] = out["ours"]["median_s"] / out["faiss"]["median_s"]
    log(f"  faiss: {f_t}; ours / faiss = {out['ratio']:.2f}x")
    return out


# --------------------------------------------------------------------------- 5. memory
def section_memory(ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    log("[5/6] memory")
    x = ds.base
    n, d = x.shape
    bits = args.memory_bits
    tables = bits // LSH_KEY_BITS
    cases = [
        ("simhash", vecindex_core.SimHashIndex, {"num_bits": bits}, bits, 1),
        ("pcahash", vecindex_core.PCAHashIndex, {"num_bits": bits}, bits, 1),
        ("itq", vecindex_core.ITQIndex, {"num_bits": bits}, bits, 1),
        ("lsh", vecindex_core.LSHIndex,
         {"num_bits": LSH_KEY_BITS, "num_tables": tables, "keep_vectors": False},
         LSH_KEY_BITS, tables),
    ]
    out = []
    for name, cls, params, b, t in cases:
        idx = cls(d, "ip", **params)
        if not idx.is_trained:
            idx.train(x)
        idx.add(x)
        codes = idx.codes
        expected_codes = n * math.ceil(b / 64) * 8 * t
        model = {a: int(getattr(idx, a).nbytes) for a in
                 ("components_", "mean_", "thresholds_", "rotation_")
                 if getattr(idx, a, None) is not None}
        extra = {}
        if name == "lsh":
            extra = {"sorted_keys": int(idx._skeys.nbytes), "sorted_slots": int(idx._sslots.nbytes),
                     "in_main": int(idx._in_main.nbytes)}
        accounted = int(idx._codes.nbytes) + sum(model.values()) + sum(extra.values())
        row = {"kind": name, "params": params, "n": n, "code_bits": b * t,
               "memory_bytes": int(idx.memory_bytes()), "codes_nbytes": int(codes.nbytes),
               "codes_capacity_nbytes": int(idx._codes.nbytes),
               "expected_codes_nbytes": expected_codes,
               "codes_ok": int(codes.nbytes) == expected_codes,
               "model_arrays": model, "tables": extra, "sum_of_arrays": accounted,
               "memory_bytes_minus_arrays": int(idx.memory_bytes()) - accounted,
               "bytes_per_row": idx.memory_bytes() / n}
        out.append(row)
        log(f"  {name}: memory_bytes={row['memory_bytes']:,} codes={row['codes_nbytes']:,} "
            f"(expected {expected_codes:,}, ok={row['codes_ok']}) model={model} {extra} "
            f"unaccounted={row['memory_bytes_minus_arrays']:,}")
    return {"rows": out}


# --------------------------------------------------------------------------- 6. autoindexers
def section_autoindexers(ds: Any, args: argparse.Namespace, ai: Any, rec: dict[str, Any],
                         ) -> dict[str, Any]:
    log("[6/6] autoindexers")
    import torch
    from autoencoders.data.base import TensorSpec

    x, q, gt, k = ds.base, ds.queries, ds.gt, args.k
    d = x.shape[1]
    xt, qt = torch.from_numpy(x), torch.from_numpy(q)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    cases: list[tuple[str, str, int, Any, Any]] = []
    for bits in args.bits:
        cases += [
            ("simhash", "SimHashIndexer", bits, ai.SimHashIndexer,
             ai.SimHashIndexerConfig(num_bits=bits)),
            ("pcahash", "PrincipalComponentHashingIndexer", bits,
             ai.PrincipalComponentHashingIndexer,
             ai.PrincipalComponentHashingIndexerConfig(num_bits=bits)),
            ("itq", "IterativeQuantizationIndexer", bits, ai.IterativeQuantizationIndexer,
             ai.IterativeQuantizationIndexerConfig(num_bits=bits, num_iterations=50)),
        ]
    for bits in args.bits:
        cases.append((f"lsh {LSH_KEY_BITS}x{bits // LSH_KEY_BITS}",
                      "LocalitySensitiveHashingIndexer", bits,
                      ai.LocalitySensitiveHashingIndexer,
                      ai.LocalitySensitiveHashingIndexerConfig(
                          num_bits=LSH_KEY_BITS, num_tables=bits // LSH_KEY_BITS)))
    ours = {(r["entry"], r["bits"]): r for r in rec["rows"] if r["rerank"] == 0}
    out = []
    try:
        for kind, cls_name, bits, cls, cfg in cases:
            try:
                indexer = cls(config=cfg, sample_spec=TensorSpec(shape=(d,)))
                build_s, _ = timed(lambda indexer=indexer: indexer.build(xt))

                def search(qq: Any, indexer: Any = indexer) -> np.ndarray:
                    res = indexer.query(qq, top_k=k)
                    found = np.full((len(res), k), -1, dtype=np.int64)
                    for i, r in enumerate(res):
                        found[i, : len(r.indices)] = r.indices[:k]
                    return found

                search(qt[:5])  # warm-up
                t1, found = timed(lambda search=search: search(qt))
                recall = recall_at_k(found, gt, k)
                times = [t1]
                while len(times) < args.ai_repeats and t1 < 5.0:  # its queries loop in Python
                    times.append(timed(lambda search=search: search(qt))[0])
                best = min(times)
                mine = ours.get((kind, bits)) or ours.get((f"{kind} p0", bits))
                row = {"kind": kind, "class": cls_name, "bits": bits, "build_s": build_s,
                       "recall": recall, "qps": q.shape[0] / best, "times_s": times,
                       "short_queries": int((found < 0).any(1).sum()),
                       "ours_recall": None if mine is None else mine["recall"],
                       "ours_qps": None if mine is None else mine["qps"],
                       "ours_build_s": None if mine is None else mine["build_s"]}
                if mine is not None:
                    row["qps_ratio_ours_over_theirs"] = mine["qps"] / row["qps"]
                out.append(row)
                log(f"  {cls_name} bits={bits}: recall={recall:.4f} QPS={row['qps']:,.1f} "
                    f"build={build_s:.2f}s | ours recall={row['ours_recall']} "
                    f"QPS={row['ours_qps']}")
            except Exception as e:  # report the failure, keep going
                out.append({"kind": kind, "class": cls_name, "bits": bits,
                            "error": f"{type(e).__name__}: {e}"})
                log(f"  {cls_name} bits={bits}: FAILED {type(e).__name__}: {e}")
    finally:
        torch.set_num_threads(old_threads)
    return {"rows": out, "torch_threads": args.threads,
            "notes": "query(): Hamming top_k by torch.topk, then the same k reordered by "
                     "0.9 * (1 - h / bits) + 0.1 * cosine (recall@k = Hamming top-k); LSH: "
                     "union of the exact buckets of every table, scored by cosine"}


# --------------------------------------------------------------------------- markdown
def fmt(v: float | None, spec: str = ".4f") -> str:
    return "—" if v is None else format(v, spec)


def to_markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    k = args.k
    ds = res["dataset"]
    L: list[str] = [f"# Binary hashing ({ds['name']}: {ds['n']:,} x {ds['dim']}, "
                    f"{ds['queries']} queries, ip, k={k}, threads={args.threads})", ""]
    rec = res.get("recall")
    if rec:
        L += [f"## Recall@{k}", "",
              "Ours: `create(\"<kind>(num_bits=B,keep_vectors=true)\")`, rerank per call. "
              "faiss rerank: `IndexRefineFlat` with `k_factor = rerank / k`. lsh: "
              f"{LSH_KEY_BITS}-bit keys x B/{LSH_KEY_BITS} tables, `pN` = num_probes N (its rerank "
              "0 scores every bucket candidate exactly; a query with under k candidates is "
              "answered by a full Hamming scan).", ""]
        cols = [(b, r) for b in args.bits for r in args.reranks]
        L.append("| entry | " + " | ".join(f"{b}b r{r}" for b, r in cols) + " |")
        L.append("|---|" + "---|" * len(cols))
        entries = list(dict.fromkeys(r["entry"] for r in rec["rows"]))
        for e in entries:
            cells = []
            for b, r in cols:
                hit = [x for x in rec["rows"] if x["entry"] == e and x["rerank"] == r
                       and x["bits"] == b]
                cells.append(fmt(hit[0]["recall"]) if hit else "—")
            L.append(f"| {e} | " + " | ".join(cells) + " |")
        ours_s, theirs_s = rec["simhash128_seed_recalls"], rec.get("faiss_lsh128_seed_recalls")
        L += ["", f"Seed noise, 128 bits, rerank 0, seeds 0-4: simhash "
              f"{', '.join(f'{s:.4f}' for s in ours_s)} (mean {np.mean(ours_s):.4f})"
              + (f"; faiss `IndexLSH(rotate=True)` {', '.join(f'{s:.4f}' for s in theirs_s)} "
                 f"(mean {np.mean(theirs_s):.4f})" if theirs_s else "")
              + ". Same algorithm: read small deltas against this spread.", ""]
        if rec.get("faiss_skipped"):
            L += [f"faiss skipped: {rec['faiss_skipped']}", ""]
        L += ["### Verdict: ours vs faiss at equal bits and rerank", "",
              "delta = ours - best faiss entry of any kind; counterpart delta = ours - "
              "best `IndexLSH` variant (simhash, simhash+median = `use_median_thresholds`, "
              "pcahash) or faiss `ITQ,LSH` (itq).", "",
              "| bits | rerank | ours | recall | best faiss | recall | delta | verdict | "
              "counterpart delta |", "|---|---|---|---|---|---|---|---|---|"]
        for v in res["verdicts"]:
            name = v["ours"] if not v["ours"].startswith("best") else f"**{v['ours']}**"
            L.append(f"| {v['bits']} | {v['rerank']} | {name} | {fmt(v['ours_recall'])} | "
                     f"{v['best_faiss'] or '—'} | {fmt(v['faiss_recall'])} | "
                     f"{fmt(v['delta'], '+.4f')} | {v['verdict']} | "
                     f"{fmt(v['counterpart_delta'], '+.4f')} |")
        L += ["", "### End-to-end batched QPS (all queries in one call; ours and faiss calls "
              f"alternated, best of {args.repeats} each)", "",
              "| bits | rerank | itq | faiss ITQ,LSH (+RefineFlat) | ratio | simhash | "
              "faiss IndexLSH(rotate) (+RefineFlat) | ratio |", "|---|---|---|---|---|---|---|---|"]

        def pair(entry: str, b: int, r: int) -> dict[str, Any] | None:
            hit = [x for x in rec.get("e2e_pairs", []) if x["ours"] == entry
                   and x["bits"] == b and x["rerank"] == r]
            return hit[0] if hit else None

        for b in args.bits:
            for r in args.reranks:
                cells = []
                for entry in ("itq", "simhash"):
                    pr = pair(entry, b, r)
                    cells += ["—", "—", "—"] if pr is None else [
                        f"{pr['ours_qps']:,.0f}", f"{pr['faiss_qps']:,.0f}",
                        f"{pr['ratio']:.2f}x"]
                L.append(f"| {b} | {r} | " + " | ".join(cells) + " |")
        L.append("")
    ham = res.get("hamming")
    if ham:
        L += ["## Hamming scan (codes of `ITQIndex`, no rerank, batched + single query)", "",
              "| bits | ours QPS | faiss IndexBinaryFlat QPS | QPS ours/faiss | ours p50 µs | "
              "faiss p50 µs | p50 ours/faiss | distances agree | same ids |",
              "|---|---|---|---|---|---|---|---|---|"]
        for r in ham["rows"]:
            f = r["faiss"] if isinstance(r["faiss"], dict) else {}
            c = r.get("check", {})
            L.append(f"| {r['bits']} | {r['ours']['qps']:,.0f} | {fmt(f.get('qps'), ',.0f')} | "
                     f"{fmt(r.get('qps_ratio'), '.2f')}x | {r['ours']['p50_us']:.0f} | "
                     f"{fmt(f.get('p50_us'), '.0f')} | {fmt(r.get('p50_ratio'), '.2f')}x | "
                     f"{c.get('faiss_distances_equal_recomputed')} / "
                     f"{c.get('topk_distances_equal')} | "
                     f"{fmt(c.get('same_ids_fraction'), '.3f')} |")
        L += ["", "distances agree: faiss's distances equal the popcount of XOR of our uint64 "
              "words at faiss's rows / our top-k distance lists equal faiss's. same ids: "
              "fraction of (query, rank) with the same row (ties may be ordered differently).",
              ""]
    lsh = res.get("lsh")
    if lsh:
        bar = lsh["bar"]
        L += [f"## LSH sweep: settings with recall@{k} >= {bar['recall']} and < "
              f"{bar['rows_fraction']:.0%} of rows scored exactly", "",
              f"{len(lsh['rows'])} settings measured in {lsh['elapsed_s']:.0f} s; "
              f"{len(lsh['skipped'])} skipped. Rows scored = candidates (rerank 0) or "
              "min(candidates, rerank); fallback queries count max(rerank, 4k).", "",
              "| num_bits | num_tables | num_probes | rerank | recall | candidates | "
              "rows scored | fraction | QPS | fallback q |", "|---" * 10 + "|"]
        def lsh_row(r: dict[str, Any], *extra: str) -> str:
            cells = [str(r["num_bits"]), str(r["num_tables"]), str(r["num_probes"]),
                     str(r["rerank"]), f"{r['recall']:.4f}", fmt(r["mean_candidates"], ",.0f"),
                     f"{r['mean_rows_scored']:,.0f}", *extra, f"{r['qps']:,.0f}"]
            return "| " + " | ".join(cells) + " |"

        for r in lsh["meets_bar"]:
            L.append(lsh_row(r, f"{r['fraction_scored']:.3f}")[:-1]
                     + f"| {r['fallback_queries']} |")
        if not lsh["meets_bar"]:
            L.append("| none | | | | | | | | | |")
        strict = lsh.get("meets_bar_with_candidates", [])
        L += ["", f"Of these, {len(strict)} also keep the bucket candidates (rows whose keys "
              f"are read and Hamming-ranked) under {bar['rows_fraction']:.0%} of the rows"
              + (": " + "; ".join(f"b={r['num_bits']} L={r['num_tables']} p={r['num_probes']} "
                                  f"r={r['rerank']}" for r in strict) if strict else "") + "."]
        L += ["", "<details><summary>full sweep</summary>", "",
              "| num_bits | num_tables | num_probes | rerank | recall | candidates | "
              "rows scored | QPS |", "|---|---|---|---|---|---|---|---|"]
        L += [lsh_row(r) for r in lsh["rows"]]
        L += ["", "</details>", ""]
        if lsh["skipped"]:
            L += ["Skipped: " + "; ".join(lsh["skipped"]), ""]
    tr = res.get("train")
    if tr:
        L += [f"## ITQ training ({tr['bits']} bits, {tr['n']:,} rows, median of 3)", "",
              "| library | median s | iterations | training rows |", "|---|---|---|---|",
              f"| ours `ITQIndex.train` | {tr['ours']['median_s']:.3f} | "
              f"{tr['ours']['iterations']} | {tr['ours']['train_rows']:,} |"]
        if isinstance(tr.get("faiss"), dict):
            f = tr["faiss"]
            L.append(f"| faiss `ITQ{tr['bits']},LSH` train | {f['median_s']:.3f} | "
                     f"{f['iterations']} | {f['train_rows']:,} |")
            L += ["", f"ours / faiss = **{tr['ratio']:.2f}x**"]
        L.append("")
    mem = res.get("memory")
    if mem:
        L += ["## Memory (keep_vectors=false)", "",
              "| kind | code bits | memory_bytes | codes nbytes | expected n*ceil(b/64)*8*tables "
              "| ok | model arrays | lsh tables | not in memory_bytes |",
              "|---|---|---|---|---|---|---|---|---|"]
        for r in mem["rows"]:
            model = ", ".join(f"{a.rstrip('_')} {v:,}" for a, v in r["model_arrays"].items())
            tables = ", ".join(f"{a} {v:,}" for a, v in r["tables"].items()) or "—"
            L.append(f"| {r['kind']} | {r['code_bits']} | {r['memory_bytes']:,} | "
                     f"{r['codes_nbytes']:,} | {r['expected_codes_nbytes']:,} | {r['codes_ok']} "
                     f"| {model} | {tables} | {-r['memory_bytes_minus_arrays']:,} |")
        L.append("")
    ai = res.get("autoindexers")
    if ai is not None:
        L += ["## autoindexers (autoencoders wheel) vs ours, rerank 0", ""]
        if isinstance(ai, str):
            L += [f"skipped: {ai}", ""]
        else:
            L += [f"Notes: {ai['notes']}.", "",
                  "| kind | bits | autoindexers recall | ours recall | autoindexers QPS | "
                  "ours QPS | QPS ours/theirs | autoindexers build s | ours build s |",
                  "|---|---|---|---|---|---|---|---|---|"]
            for r in ai["rows"]:
                if "error" in r:
                    L.append(f"| {r['kind']} | {r['bits']} | error: {r['error']} | | | | | | |")
                    continue
                L.append(f"| {r['kind']} | {r['bits']} | {r['recall']:.4f} | "
                         f"{fmt(r['ours_recall'])} | {r['qps']:,.1f} | "
                         f"{fmt(r['ours_qps'], ',.0f')} | "
                         f"{fmt(r.get('qps_ratio_ours_over_theirs'), ',.1f')}x | "
                         f"{r['build_s']:.2f} | {fmt(r['ours_build_s'], '.2f')} |")
            L.append("")
    bad = [name for name, ok in res.get("sanity", {}).items()
           if name.startswith("hamming") and not ok]
    L += [f"Sanity (`hamming_topk` vs numpy brute force): "
          f"{'all passed' if not bad else 'FAILED: ' + ', '.join(bad)}.", ""]
    for name, err in res.get("errors", {}).items():
        L += [f"Section `{name}` failed: {err}", ""]
    la = {k2: v for k2, v in res.get("loadavg", {}).items() if k2 != "note"}
    if la:
        worst = max(v[0] for v in la.values())
        L += [f"Highest 1-min load average seen at a section boundary: {worst:.2f} "
              f"(threads={args.threads}; higher means another process shared the cores).", ""]
    env = res["environment"]
    L += [f"Environment: {env.get('cpu_model')}, {env.get('cpu_affinity')} usable cores, "
          f"Python {env.get('python')}, versions {json.dumps(env.get('versions'))}.", ""]
    return "\n".join(L)


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the sections, print the markdown and write ``hashing.{json,md}``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.is_dir() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--bits", type=_ints, default=[64, 128, 256])
    p.add_argument("--reranks", type=_ints, default=[0, 100, 500])
    p.add_argument("--lsh-table-probes", type=_ints, default=[0, 4],
                   help="num_probes of the lsh rows of the recall table")
    p.add_argument("--lsh-bits", type=_ints, default=[10, 12, 14, 16])
    p.add_argument("--lsh-tables", type=_ints, default=[16, 32, 64])
    p.add_argument("--lsh-probes", type=_ints, default=[0, 4, 16, 32])
    p.add_argument("--lsh-reranks", type=_ints, default=[0, 500, 1000])
    p.add_argument("--lsh-budget", type=float, default=240.0,
                   help="seconds for the whole LSH sweep; later settings are skipped")
    p.add_argument("--lsh-slow", type=float, default=8.0,
                   help="a search slower than this skips the rest of its (bits, tables)")
    p.add_argument("--lsh-recall", type=float, default=0.9)
    p.add_argument("--lsh-rows", type=float, default=0.1)
    p.add_argument("--train-bits", type=int, default=128)
    p.add_argument("--memory-bits", type=int, default=128)
    p.add_argument("--ai-repeats", type=int, default=2,
                   help="timed calls for autoindexers when one takes under 5 s (its queries "
                   "loop in Python)")
    p.add_argument("--sections", default="recall,hamming,lsh,train,memory,autoindexers")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    sections = set(args.sections.split(","))

    ds = load_dataset(args.data, num_queries=args.queries, gt_k=max(args.k, 100))
    if ds.gt is None:
        p.error("the dataset has no ground truth")
    faiss, faiss_why = import_faiss()
    ai, ai_why = import_autoindexers()
    res: dict[str, Any] = {
        "dataset": {"name": ds.name, "n": int(ds.base.shape[0]), "dim": int(ds.base.shape[1]),
                    "queries": int(ds.queries.shape[0]), "metric": "ip"},
        "args": vars(args) | {"sections": sorted(sections)},
        "skipped_peers": {name: why for name, why in
                          (("faiss", faiss_why), ("autoindexers", ai_why)) if why},
    }
    log(f"dataset {ds.name}: {ds.base.shape} base, {ds.queries.shape} queries; "
        f"skipped peers: {res['skipped_peers'] or 'none'}")
    res["source"] = source_fingerprint(SOURCES)
    res["errors"] = {}
    res["loadavg"] = {"note": "os.getloadavg() (1, 5, 15 min): > threads means another "
                      "process competed for the cores", "start": os.getloadavg()}
    t0 = time.perf_counter()

    def run(name: str, fn: Callable[[], Any]) -> None:
        if name not in sections:
            return
        res["loadavg"][f"{name} start"] = os.getloadavg()
        try:
            res[name] = fn()
        except Exception as e:  # record and go on with the other sections
            res["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"  section {name} FAILED: {type(e).__name__}: {e}")
        res["loadavg"][f"{name} end"] = os.getloadavg()

    with pinned_threads(args.threads):
        res["environment"] = environment_info()
        res["sanity"] = sanity_checks()
        log(f"sanity: {res['sanity']}")
        run("recall", lambda: section_recall(ds, args, faiss))
        if "recall" in res:
            res["verdicts"] = verdicts(res["recall"], args)
        run("hamming", lambda: section_hamming(ds, args, faiss))
        run("lsh", lambda: section_lsh(ds, args))
        run("train", lambda: section_train(ds, args, faiss))
        run("memory", lambda: section_memory(ds, args))
        if ai is None:
            res["autoindexers"] = ai_why
        else:
            run("autoindexers", lambda: section_autoindexers(
                ds, args, ai, res.get("recall", {"rows": []})))
    res["elapsed_s"] = time.perf_counter() - t0
    res["source_changed_on_disk_during_run"] = source_fingerprint(SOURCES) != res["source"]
    md = to_markdown(res, args)
    print(md)
    write_results(args.out, "hashing", res, md)
    return 0




if __name__ == "__main__":
    sys.exit(main())
