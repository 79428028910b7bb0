"""Benchmark results and their three renderings: JSON, a markdown table and a PNG plot.

:class:`BenchReport` holds every raw number the runner measured plus the environment. It
renders to

- JSON (:meth:`BenchReport.to_dict` / :meth:`BenchReport.write`): everything, for reruns
  and comparisons;
- a markdown table (:meth:`BenchReport.to_markdown`): one row per entry x thread count,
  with ratios against a baseline peer measured in the same process at the same thread
  count;
- a recall-vs-QPS scatter plot (:meth:`BenchReport.plot`), drawn with matplotlib's Agg
  canvas directly (no pyplot, no global backend switch), imported only when called.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchReport", "EntryResult", "SkippedEntry"]


@dataclass
class EntryResult:
    """Measurements of one entry (an index of ours or a peer) at one thread count.

    Attributes
    ----------
    name : str
        Display name (spec string for ours, e.g. ``"faiss.IndexFlatIP"`` for peers).
    key : str
        Spec as given for ours, peer name (``"faiss"``) for peers.
    is_peer : bool
    threads : int
        Threads every pool was pinned to (BLAS, OpenMP, vecindex, faiss).
    build_s : float
        Seconds to build: train (when the index needs it) plus add of every base vector.
    recall : dict of int to float
        ``recall@k = |found[:k] ∩ gt[:k]| / k``, averaged over queries, from one search at
        ``search_k``.
    search_k : int
        ``k`` of the timed searches (the largest requested k, at most the base size).
    qps : float
        Queries per second of the batched search (all queries in one call), best repeat.
    batch_s : list of float
        Wall time of every timed batched repeat (after one warm-up call).
    latency_p50_us, latency_p99_us, latency_mean_us : float
        Single-query latency over ``latency_queries`` individual calls, microseconds.
    latency_queries : int
    memory_bytes : int or None
        Memory of the index; see ``memory_source``.
    memory_source : str
        ``"memory_bytes()"`` when the index reports its own memory (ours; the numpy peer
        reports its arrays' ``nbytes``), ``"rss_delta"`` when it is the growth of the
        process resident set size across the build (peers that cannot report it).
    rss_delta_bytes : int or None
        Process RSS growth across the build, recorded for every entry (noisy: the
        allocator may reuse freed pages or keep them).
    ntotal : int
        Vectors in the index after the build.
    """

    name: str
    key: str
    is_peer: bool
    threads: int
    build_s: float
    recall: dict[int, float]
    search_k: int
    qps: float
    batch_s: list[float]
    latency_p50_us: float
    latency_p99_us: float
    latency_mean_us: float
    latency_queries: int
    memory_bytes: int | None
    memory_source: str
    rss_delta_bytes: int | None
    ntotal: int


@dataclass
class SkippedEntry:
    """An entry that was not measured, and why (peer not installed, build failed...).

    ``failed`` is true when one of *our* indexes raised: that is a bug, not a missing
    optional dependency, and the CLI exits non-zero for it.
    """

    key: str
    is_peer: bool
    reason: str
    threads: int | None = None
    failed: bool = False


@dataclass
class BenchReport:
    """Everything one :func:`~vecindex_core.bench.run_benchmark` call measured.

    Attributes
    ----------
    dataset : dict
        ``name``, ``n`` (base size), ``dim``, ``nq`` (queries), ``metric``, ``gt_source``
        (``"dataset"`` or ``"computed"``) and ``gt_k``.
    config : dict
        ``k_values``, ``threads``, ``repeats``, ``latency_queries``, ``specs``, ``peers``.
    environment : dict
        See :func:`vecindex_core.bench.env.environment_info`.
    results : list of EntryResult
    skipped : list of SkippedEntry
    baseline : str or None
        Peer key the ratios in :meth:`to_markdown` are taken against.
    """

    dataset: dict[str, Any]
    config: dict[str, Any]
    environment: dict[str, Any]
    results: list[EntryResult] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    baseline: str | None = None

    # ----------------------------------------------------------------- lookups
    @property
    def failures(self) -> list[SkippedEntry]:
        """Entries of ours that raised while being measured."""
        return [s for s in self.skipped if s.failed]

    def result(self, key: str, threads: int | None = None) -> EntryResult:
        """The result whose key (spec or peer name) or display name is ``key``.

        Raises
        ------
        KeyError
            No such result; the message lists the measured ones.
        """
        for r in self.results:
            if key in (r.key, r.name) and (threads is None or r.threads == threads):
                return r
        have = sorted({f"{r.key}@{r.threads}" for r in self.results})
        raise KeyError(f"no result for {key!r} (threads={threads}); measured: {have}")

    def _baseline_for(self, r: EntryResult, baseline: str | None) -> EntryResult | None:
        if baseline is None:
            return None
        for b in self.results:
            if b.is_peer and b.key == baseline and b.threads == r.threads:
                return b
        return None

    # ----------------------------------------------------------------- renderings
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every raw number (recall keys become strings)."""
        results = []
        for r in self.results:
            d = asdict(r)
            d["recall"] = {str(k): v for k, v in r.recall.items()}
            results.append(d)
        return {
            "dataset": self.dataset,
            "config": self.config,
            "baseline": self.baseline,
            "results": results,
            "skipped": [asdict(s) for s in self.skipped],
            "environment": self.environment,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_markdown(self, baseline: str | None = None) -> str:
        """A markdown table, one row per entry x threads, with ratios against ``baseline``.

        Parameters
        ----------
        baseline : str, optional
            Peer key (``"faiss"``, ``"numpy"``, ``"hnswlib"``); defaults to
            :attr:`baseline`. ``qps / base`` is this entry's batched QPS over the
            baseline's (higher is better); ``p50 / base`` is this entry's median
            single-query latency over the baseline's (lower is better). Both compare runs
            at the same thread count.
        """
        base = self.baseline if baseline is None else baseline
        ks = list(self.config.get("k_values", ()))
        head = ["entry", "threads", "build s"]
        head += [f"recall@{k}" for k in ks]
        head += ["QPS (batch)", "p50 µs", "p99 µs", "memory MiB"]
        has_base = base is not None and any(r.is_peer and r.key == base for r in self.results)
        if has_base:
            head += [f"QPS / {base}", f"p50 / {base}"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in sorted(self.results, key=lambda r: (r.threads, r.is_peer)):
            mem = "-" if r.memory_bytes is None else f"{r.memory_bytes / 2**20:.1f}"
            if r.memory_source == "rss_delta" and r.memory_bytes is not None:
                mem += " (RSS Δ)"
            row = [f"`{r.name}`" if not r.is_peer else r.name, str(r.threads), f"{r.build_s:.3f}"]
            row += [_fmt_recall(r.recall.get(k)) for k in ks]
            row += [f"{r.qps:,.0f}", f"{r.latency_p50_us:,.0f}", f"{r.latency_p99_us:,.0f}", mem]
            if has_base:
                b = self._baseline_for(r, base)
                row += [
                    _ratio(r.qps, b.qps if b else None),
                    _ratio(r.latency_p50_us, b.latency_p50_us if b else None),
                ]
            lines.append("| " + " | ".join(row) + " |")
        ds = self.dataset
        notes = [
            "",
            f"Data: {ds.get('name')} — {ds.get('n')} x {ds.get('dim')} base, {ds.get('nq')} "
            f"queries, metric {ds.get('metric')}, ground truth {ds.get('gt_source')}. "
            f"Searches at k={self.result_k()}; recall@k = |found[:k] ∩ gt[:k]| / k.",
            f"QPS: all queries in one call, best of {self.config.get('repeats')} after a "
            f"warm-up. Latency: {self.config.get('latency_queries')} single-query calls. "
            "Memory: `memory_bytes()` for ours and numpy; RSS growth over the build (RSS Δ) "
            "for peers that cannot report their own.",
            f"CPU: {self.environment.get('cpu_model')} "
            f"({self.environment.get('cpu_affinity') or self.environment.get('cpu_count')} "
            "usable cores).",
        ]
        for s in self.skipped:
            where = "" if s.threads is None else f" (threads={s.threads})"
            label = "FAILED" if s.failed else "skipped"
            notes.append(f"- {label}: {s.key}{where}: {s.reason}")
        return "\n".join(lines + notes) + "\n"

    def result_k(self) -> int | None:
        """``k`` of the timed searches (the same for every entry), or None if none ran."""
        return self.results[0].search_k if self.results else None

    def plot(self, path: str | os.PathLike[str], *, k: int | None = None) -> Path:
        """Write a recall@k vs batched-QPS scatter plot (PNG) to ``path``.

        Parameters
        ----------
        path : str or PathLike
        k : int, optional
            Recall cut-off on the x axis; defaults to 10 when measured, else the largest.

        Raises
        ------
        ImportError
            matplotlib is not installed (``pip install vecindex[bench]``).
        """
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        ks = sorted(self.config.get("k_values", ()))
        kk = k if k is not None else (10 if 10 in ks else (ks[-1] if ks else 10))
        fig = Figure(figsize=(8, 5.5), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        markers = "os^Dv<>pP*Xh"
        threads = sorted({r.threads for r in self.results})
        names = list(dict.fromkeys(r.name for r in self.results))
        colors = colormaps["tab10"]
        for r in self.results:
            rec = r.recall.get(kk)
            if rec is None or not math.isfinite(r.qps) or r.qps <= 0:
                continue
            i = names.index(r.name)
            ax.scatter(
                [rec], [r.qps],
                marker=markers[threads.index(r.threads) % len(markers)],
                color=colors(i % 10), s=60,
                edgecolors="black" if r.is_peer else "none",
                label=f"{r.name} ({r.threads}t)",
            )
            ax.annotate(
                f"{r.name} {r.threads}t", (rec, r.qps), fontsize=7,
                xytext=(4, 3), textcoords="offset points",
            )
        recalls = [r.recall[kk] for r in self.results if kk in r.recall]
        if recalls:
            ax.set_xlim(max(0.0, min(recalls) - 0.05), 1.005)
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{kk}")
        ax.set_ylabel("queries per second (batched, log scale)")
        ds = self.dataset
        ax.set_title(
            f"{ds.get('name')}: {ds.get('n')}x{ds.get('dim')}, {ds.get('nq')} queries, "
            f"{ds.get('metric')}, k={self.result_k()}",
            fontsize=10,
        )
        ax.grid(True, which="both", alpha=0.3)
        if self.results:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, format="png")
        return out

    def write(self, out_dir: str | os.PathLike[str], *, stem: str = "bench") -> dict[str, Path]:
        """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` (if matplotlib is present).

        Returns
        -------
        dict of str to Path
            The files written, keyed ``"json"``, ``"markdown"`` and ``"png"``.
        """
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        paths = {"json": d / f"{stem}.json", "markdown": d / f"{stem}.md"}
        paths["json"].write_text(self.to_json() + "\n", encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        try:
            paths["png"] = self.plot(d / f"{stem}.png")
        except ImportError:  # the JSON and the table are complete without the plot
            paths.pop("png", None)
        return paths


def _fmt_recall(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _ratio(a: float, b: float | None) -> str:
    if b is None or b == 0 or not math.isfinite(a) or not math.isfinite(b):
        return "-"
    return f"{a / b:.2f}x"
