"""Write the format-version-1 golden files into ``tests/golden/v1/``.

Run once per format version and check the outputs in; ``tests/test_io.py`` loads them with
``vecindex_core.load`` and compares search results exactly, and also checks that running
this script again reproduces every file byte for byte.

Usage: ``python tests/golden/make_golden.py [OUTPUT_DIR]``

The data are chosen so that every expected result is exact on any machine: vectors hold
small integers and every row's squared norm is 4, 16 or 64, so cosine normalisation divides
by a power of two and every ip, cosine and l2 score is exactly representable in float32,
whatever order a kernel sums in. Ties are frequent and follow the documented rule (lower slot
first). Random choices come from a fixed 64-bit LCG, not numpy's generators, so the files do
not depend on the numpy version.

Files written (64 rows x 16 dims; ids 1000, 1003, ... then counter ids; three removed):

- ``flat_{metric}.vecidx`` for each metric: an IdMapIndex file;
- ``flat_ip_positional.vecidx``: a bare FlatIndex file (no id map), two slots removed;
- ``queries.npy``: 12 float32 queries (the first 3 exercise the small-batch kernel);
- ``flat_{metric}_ids.npy`` / ``flat_{metric}_scores.npy`` and
  ``flat_ip_positional_ids.npy`` / ``..._scores.npy``: expected top-8 results.

A staged (not yet trained) IdMapIndex file is not written: no registered kind needs
training yet, so one cannot be made with the public API. Add it when such a kind exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import vecindex_core as vc

OUT = Path(__file__).resolve().parent / "v1"
DIM = 16
K = 8
#: Multisets of absolute values whose squares sum to 4, 16 or 64 (padded with zeros).
PATTERNS = [
    [1] * 4, [1] * 16, [2] * 4, [4], [2] * 3 + [1] * 4, [2] * 2 + [1] * 8,
    [2] + [1] * 12, [3] + [1] * 7, [4] * 4, [2] * 16, [6] + [2] * 7, [2], [1],
]


class Lcg:
    """Knuth's MMIX 64-bit linear congruential generator (upper bits used)."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def below(self, n: int) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 33) % n


def vectors(n: int, seed: int) -> np.ndarray:
    rng = Lcg(seed)
    out = np.zeros((n, DIM), dtype=np.float32)
    for row in out:
        values = PATTERNS[rng.below(len(PATTERNS))]
        positions = list(range(DIM))
        for i in range(DIM - 1, 0, -1):  # Fisher-Yates
            j = rng.below(i + 1)
            positions[i], positions[j] = positions[j], positions[i]
        for pos, v in zip(positions, values, strict=False):
            row[pos] = v if rng.below(2) else -v
    return out


def queries() -> np.ndarray:
    return vectors(12, seed=7)


def build(metric: str) -> vc.IdMapIndex:
    x = vectors(64, seed=42)
    index = vc.create("flat", dim=DIM, metric=metric)
    index.add(x[:40], ids=np.arange(40, dtype=np.uint64) * 3 + 1000)
    index.add(x[40:])  # counter ids 1118..1141
    index.remove([1000, 1003, 1030])
    return index


def build_positional() -> vc.FlatIndex:
    index = vc.FlatIndex(DIM, "ip")
    index.add(vectors(64, seed=42))
    index.remove([0, 5])
    return index


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    q = queries()
    np.save(out / "queries.npy", q)
    for metric in vc.METRICS:
        index = build(metric)
        index.save(out / f"flat_{metric}.vecidx")
        res = index.search(q, K)
        np.save(out / f"flat_{metric}_ids.npy", res.ids)
        np.save(out / f"flat_{metric}_scores.npy", res.scores)
    pos = build_positional()
    pos.save(out / "flat_ip_positional.vecidx")
    res = pos.search(q, K)
    np.save(out / "flat_ip_positional_ids.npy", res.ids)
    np.save(out / "flat_ip_positional_scores.npy", res.scores)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
