"""The demo behind ``vecindex demo`` and ``make demo``: every index over the bundled sample.

It loads the bundled sample (real sentence embeddings with their texts), builds exact
search and every registered index with its default parameters under the ``cosine`` metric,
runs the sample's queries through the benchmark runner next to the installed peers (faiss,
numpy, hnswlib; missing ones are listed as skipped), prints the markdown table, writes
``demo.json``, ``demo.md`` and ``demo.png`` (recall vs QPS) to the output directory, and
shows three example queries with the texts and scores of their top-5 neighbours. Nothing
needs a server or a download.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from .bench.report import BenchReport

__all__ = ["DEMO_PEERS", "SAMPLE_SPECS", "example_queries", "run_demo"]

#: Peers the demo compares with, when installed.
DEMO_PEERS: tuple[str, ...] = ("faiss", "numpy", "hnswlib")
#: Specs sized for the 5,000-row sample, for kinds whose defaults (256 lists, or 256-centroid
#: sub-quantizers, trained at 7,680 vectors) would never train on it and so stay exact.
SAMPLE_SPECS: dict[str, str] = {
    "ivf_flat": "ivf_flat(nlist=64)",
    "ivf_pq": "ivf_pq(nlist=64)",
    "ivf_tq": "ivf_tq(nlist=64)",
    "ivf_ae": "ivf_ae(nlist=64)",
    "pq": "pq(train_size=2000)",
}

#: Kinds that need an external server, and the environment variable that points at one: the
#: default demo runs with no servers, so these join it only when the variable is set.
SERVER_KINDS: dict[str, str] = {"redis_lsh": "VECINDEX_REDIS_URL"}


def _text(texts: Sequence[Any] | None, i: int) -> str:
    if texts is None or i < 0 or i >= len(texts):
        return "(no text)"
    t = texts[i]
    if isinstance(t, dict):
        t = t.get("text", t)
    s = " ".join(str(t).split())
    return s if len(s) <= 110 else s[:107] + "..."


def example_queries(
    dataset: Any, *, spec: str = "flat", n_examples: int = 3, k: int = 5
) -> str:
    """Top-``k`` neighbours (texts and scores) of ``n_examples`` queries, as plain text.

    Parameters
    ----------
    dataset : Dataset
        Needs ``base``, ``queries``; ``base_texts``/``query_texts`` are shown when present.
    spec : str
        Index used for the search (exact ``flat`` by default), with the ``cosine`` metric.
    n_examples, k : int
    """
    from .api import create

    index = create(spec, dim=dataset.base.shape[1], metric="cosine")
    index.add(dataset.base)
    nq = dataset.queries.shape[0]
    picks = np.unique(np.linspace(0, nq - 1, num=min(n_examples, nq)).astype(np.int64))
    res = index.search(dataset.queries[picks], k)
    lines = [f"Example queries ({spec}, cosine, top {k}):"]
    for row, qi in enumerate(picks):
        lines += ["", f"query {int(qi)}: {_text(dataset.query_texts, int(qi))}"]
        for rank in range(int(res.counts[row])):
            rid = int(res.ids[row, rank])
            lines.append(
                f"  {rank + 1}. {res.scores[row, rank]:.3f}  [{rid}] "
                f"{_text(dataset.base_texts, rid)}"
            )
    return "\n".join(lines)


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-out",
    *,
    specs: Sequence[str] | None = None,
    peers: Sequence[str] = DEMO_PEERS,
    progress: bool = True,
    stream: IO[str] | None = None,
) -> BenchReport:
    """Build every registered index over the bundled sample, compare, and show examples.

    Parameters
    ----------
    out_dir : str or PathLike
        Where ``demo.json``, ``demo.md`` and ``demo.png`` are written (created if needed).
    specs : sequence of str, optional
        Index specs to build; default every registered kind with default parameters (sized
        for the sample by ``SAMPLE_SPECS`` where the defaults would not train on it),
        exact ``flat`` first.
    peers : sequence of str
        Peers to compare with; those not installed are reported as skipped.
    progress : bool
        Show a progress bar on stderr (when tqdm is installed).
    stream : text stream, optional
        Where the table and examples are printed (default ``sys.stdout``).

    Returns
    -------
    BenchReport
    """
    from .bench.runner import run_benchmark
    from .datasets import load_sample
    from .registry import list_indexes

    out = stream if stream is not None else sys.stdout
    dataset = load_sample()
    left_out: list[str] = []
    if specs is None:
        names = list_indexes()
        left_out = [n for n, env in SERVER_KINDS.items() if n in names and not os.environ.get(env)]
        specs = ["flat"] + [
            SAMPLE_SPECS.get(n, n) for n in names if n != "flat" and n not in left_out
        ]
    n, dim = dataset.base.shape
    print(
        f"vecindex demo: {len(specs)} index kind(s) and {len(peers)} peer(s) over the "
        "bundled sample "
        f"({n} x {dim} base vectors, {dataset.queries.shape[0]} queries, metric cosine)",
        file=out,
    )
    for name in left_out:
        print(f"  {name} left out: it needs a server (set {SERVER_KINDS[name]} to include it)",
              file=out)
    report = run_benchmark(
        dataset, list(specs), peers=list(peers), k_values=(1, 10, 100), threads=(1,),
        metric="cosine", out_dir=out_dir, repeats=2, latency_queries=100, stem="demo",
        progress=progress,
    )
    print("", file=out)
    print(report.to_markdown(), file=out)
    print(example_queries(dataset), file=out)
    d = Path(out_dir)
    written = [p.name for p in (d / "demo.json", d / "demo.md", d / "demo.png") if p.exists()]
    print(f"\nwrote {', '.join(written)} to {d}", file=out)
    return report
