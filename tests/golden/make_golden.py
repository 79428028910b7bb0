"""Write the format-version-1 golden files (run once per format version; outputs are checked in).

Usage: python tests/golden/make_golden.py
"""

from pathlib import Path

import numpy as np

import vecindex_core as vc

OUT = Path(__file__).resolve().parent / "v1"


def build(metric: str) -> vc.IdMapIndex:
    rng = np.random.default_rng(42)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    index = vc.create("flat", dim=16, metric=metric)
    index.add(x[:40], ids=np.arange(40, dtype=np.uint64) * 3 + 1000)
    index.add(x[40:])
    index.remove([1000, 1003, 1030])
    return index


def queries() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((5, 16)).astype(np.float32)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "queries.npy", queries())
    for metric in vc.METRICS:
        index = build(metric)
        index.save(OUT / f"flat_{metric}.vecidx")
        res = index.search(queries(), 8)
        np.save(OUT / f"flat_{metric}_ids.npy", res.ids)
        np.save(OUT / f"flat_{metric}_scores.npy", res.scores)


if __name__ == "__main__":
    main()
