"""Codes wider than the fast-scan kernels take (issue 8).

The uint8 fast scan takes at most 32768 byte columns (``MAX_COLUMNS``); wider codes (4-bit
``ivf_tq`` / ``turboquant`` above 65536 dimensions) stay on the float routes
(``fast_scan_fits``), so such an index searches like any other.
"""

from __future__ import annotations

import numpy as np
import pytest

import vecindex_core as vc

DIM = 65600  # 4-bit codes: 32800 bytes a row, past the kernels' 32768 columns


@pytest.mark.parametrize(("kind", "params"), [
    ("ivf_tq", {"nlist": 1, "niter": 2, "bits": 4}),
    ("turboquant", {"bits": 4}),
])
def test_search_works_for_codes_wider_than_the_fast_scan_takes(
        kind: str, params: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, DIM)).astype(np.float32)
    index = vc.create(kind, dim=DIM, metric="ip", **params).index
    index.train(x)
    index.add(x)
    res = index.search(x[:3], 4)  # raised: "luts must have 1 to 32768 byte columns"
    assert res.counts.tolist() == [4, 4, 4]
    # near-orthogonal rows: each query's best match is itself, even through 4-bit codes
    assert res.ids[:, 0].tolist() == [0, 1, 2]
