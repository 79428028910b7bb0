"""The shared thread pool helpers (``vecindex_core._threads``)."""

from __future__ import annotations

import threading
import time

import pytest

import vecindex_core as vc
from vecindex_core._threads import map_chunks, split_plan


@pytest.fixture
def two_threads():
    old = vc.get_num_threads()
    vc.set_num_threads(2)
    yield
    vc.set_num_threads(old)


@pytest.mark.parametrize(("n", "parts"), [(1, 1), (5, 2), (7, 3), (2, 4), (100, 7)])
def test_map_chunks_covers_every_item_once(two_threads, n, parts):
    seen: list[int] = []
    lock = threading.Lock()

    def fn(a: int, b: int) -> None:
        with lock:
            seen.extend(range(a, b))

    map_chunks(fn, n, parts)
    assert sorted(seen) == list(range(n))


def test_map_chunks_runs_the_first_chunk_on_the_calling_thread(two_threads):
    where: dict[int, int] = {}

    def fn(a: int, b: int) -> None:
        where[a] = threading.get_ident()

    map_chunks(fn, 10, 2)
    assert where[0] == threading.get_ident()
    assert where[5] != threading.get_ident()


@pytest.mark.parametrize("failing", [0, 5])
def test_map_chunks_raises_after_every_chunk_finished(two_threads, failing):
    done: list[int] = []

    def fn(a: int, b: int) -> None:
        if a == failing:
            raise ValueError(f"chunk {a}")
        time.sleep(0.05)
        done.append(a)

    with pytest.raises(ValueError, match=f"chunk {failing}"):
        map_chunks(fn, 10, 2)
    assert done == [5 - failing]  # the other chunk ran to its end before the raise


def test_split_plan_needs_more_work_to_split_rows():
    old = vc.get_num_threads()
    try:
        vc.set_num_threads(2)
        assert split_plan(100, 10, 1) == (2, False)  # queries split
        assert split_plan(1, 10, 1) == (2, True)  # rows split, no separate minimum
        assert split_plan(1, 10, 1, 8) == (1, False)  # one thread: 10 < 2 * 8
        assert split_plan(1, 16, 1, 8) == (2, True)
        assert split_plan(100, 10, 1, 8) == (2, False)  # a query split keeps min_work
        vc.set_num_threads(1)
        assert split_plan(1, 10 ** 9, 1, 8) == (1, False)
    finally:
        vc.set_num_threads(old)
