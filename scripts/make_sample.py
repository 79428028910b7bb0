"""Cut the bundled sample from the shared dev split (see vecindex_core/data/*/README.md).

Usage: python scripts/make_sample.py [--source ../shared/data/dev] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "dev")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "vecindex_core" / "data" / "minilm_wordnet_5k"
    )
    ap.add_argument("--n-base", type=int, default=5000)
    ap.add_argument("--n-queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src, out = args.source, args.out
    out.mkdir(parents=True, exist_ok=True)
    base = np.load(src / "base.npy")
    queries = np.load(src / "queries.npy")
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(base.shape[0], args.n_base, replace=False))
    b16 = base[rows].astype(np.float16)
    q16 = queries[: args.n_queries].astype(np.float16)
    # exact ground truth on what users load (float16 upcast), in float64, ties by lower row
    scores = q16.astype(np.float64) @ b16.astype(np.float64).T
    order = np.lexsort((np.broadcast_to(np.arange(b16.shape[0]), scores.shape), -scores), axis=-1)
    gt = order[:, :100].astype(np.int32)
    np.save(out / "base.npy", b16)
    np.save(out / "queries.npy", q16)
    np.save(out / "gt_ip_100.npy", gt)
    top_scores = np.take_along_axis(scores, order[:, :100], 1).astype(np.float32)
    np.save(out / "gt_ip_100_scores.npy", top_scores)
    for name, keep in (("base_texts.jsonl", rows), ("queries_texts.jsonl", range(args.n_queries))):
        lines = (src / name).read_text().splitlines()
        with open(out / name, "w") as f:
            for i in keep:
                rec = json.loads(lines[i])
                f.write(json.dumps({"id": rec["id"], "text": rec["text"]}) + "\n")


if __name__ == "__main__":
    main()
