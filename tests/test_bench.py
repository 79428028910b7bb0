"""Smoke tests of the benchmark runner, the micro-benchmarks, the demo and the CLI.

They run on a tiny slice of the bundled sample and check what was written and that exact
search has recall 1.0; they never assert on timings.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vecindex_core.bench import (
    BenchReport,
    bench_idmap_ops,
    bench_load,
    recall_at_k,
    run_benchmark,
)
from vecindex_core.cli import main, split_specs
from vecindex_core.datasets import Dataset, load_sample
from vecindex_core.errors import InvalidArgumentError, UnknownIndexError

QUIET = {"repeats": 1, "latency_queries": 4, "progress": False}


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """First 600 base vectors and 8 queries of the sample, ground truth left to the runner."""
    ds = load_sample()
    nb, nq = 600, 8
    return dataclasses.replace(
        ds,
        name="tiny",
        base=ds.base[:nb],
        queries=ds.queries[:nq],
        gt=None,
        base_texts=None if ds.base_texts is None else ds.base_texts[:nb],
        query_texts=None if ds.query_texts is None else ds.query_texts[:nq],
    )


def test_recall_at_k_counts_overlap_and_ignores_padding() -> None:
    gt = np.array([[0, 1, 2], [3, 4, 5]])
    found = np.array([[2, 0, 9], [5, -1, -1]])
    assert recall_at_k(found, gt, 3) == pytest.approx((2 + 1) / 6)
    assert recall_at_k(found, gt, 1) == pytest.approx(0.0)
    with pytest.raises(InvalidArgumentError, match="recall@4"):
        recall_at_k(found, gt, 4)


def test_run_benchmark_writes_json_markdown_png(tiny: Dataset, tmp_path: Path) -> None:
    report = run_benchmark(
        tiny, ["flat"], peers=["numpy", "faiss", "hnswlib"], k_values=(1, 10),
        threads=(1, 2), out_dir=tmp_path, **QUIET,
    )
    assert isinstance(report, BenchReport)
    assert not report.failures
    for t in (1, 2):
        flat = report.result("flat", t)
        assert flat.recall == {1: 1.0, 10: 1.0}
        assert flat.memory_source == "memory_bytes()"
        assert flat.memory_bytes is not None and flat.memory_bytes >= tiny.base.nbytes
        assert report.result("numpy", t).recall[10] == 1.0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["dataset"]["n"] == 600 and data["dataset"]["gt_source"] == "computed"
    assert {r["key"] for r in data["results"]} >= {"flat", "numpy"}
    env = data["environment"]
    assert {"cpu_model", "threadpool_info", "thread_env", "versions"} <= set(env)
    md = (tmp_path / "bench.md").read_text()
    assert "`flat`" in md and "recall@10" in md
    pytest.importorskip("matplotlib")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_peer_is_skipped_with_reason(
    tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # makes `import hnswlib` fail
    report = run_benchmark(tiny, ["flat"], peers=["hnswlib", "numpy"], k_values=(5,), **QUIET)
    (skip,) = report.skipped
    assert skip.key == "hnswlib" and "hnswlib" in skip.reason and not skip.failed
    assert [r.key for r in report.results] == ["flat", "numpy"]
    assert "skipped: hnswlib" in report.to_markdown()


def test_failing_index_is_recorded_not_raised(
    tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vecindex_core.bench import peers

    def boom(self: object, base: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(peers.OurIndex, "build", boom)
    report = run_benchmark(tiny, ["flat"], peers=["numpy"], k_values=(1,), **QUIET)
    (fail,) = report.failures
    assert fail.key == "flat" and "kaboom" in fail.reason
    assert "FAILED: flat" in report.to_markdown()


def test_bad_arguments_raise_before_running(tiny: Dataset) -> None:
    with pytest.raises(UnknownIndexError, match="flat"):
        run_benchmark(tiny, ["no_such_index"], peers=[], **QUIET)
    with pytest.raises(InvalidArgumentError, match="valid peers"):
        run_benchmark(tiny, ["flat"], peers=["annoyx"], **QUIET)
    with pytest.raises(InvalidArgumentError, match="threads"):
        run_benchmark(tiny, ["flat"], peers=[], threads=(0,), **QUIET)


def test_micro_benchmarks_smoke(tmp_path: Path) -> None:
    ops = bench_idmap_ops(n_base=300, n_ops=20, dim=8, sizes=(100, 300))
    assert {(r["library"], r["n_base"]) for r in ops.rows} >= {("vecindex", 100),
                                                              ("vecindex", 300)}
    assert ops.row("vecindex", 300)["ntotal_after"] == 300
    assert "O(1) check" in ops.to_markdown()
    load = bench_load(n=300, dim=8, repeats=1, workdir=tmp_path, rss=False)
    assert {r["loader"] for r in load.rows} == {"vecindex_core.load", "numpy.load"}
    assert load.payload_bytes == 300 * 8 * 4
    assert "peak / payload" in load.to_markdown()
    assert not list(tmp_path.iterdir())  # the temporary files are gone


def test_demo_smoke(tmp_path: Path) -> None:
    from vecindex_core.demo import run_demo

    out = io.StringIO()
    report = run_demo(tmp_path, specs=["flat"], peers=["numpy"], progress=False, stream=out)
    text = out.getvalue()
    assert report.result("flat").recall[10] == 1.0
    assert "Example queries" in text and text.count("  5. ") == 3
    assert (tmp_path / "demo.json").exists() and (tmp_path / "demo.md").exists()


def test_split_specs_keeps_parenthesised_commas() -> None:
    assert split_specs("flat, ivf_pq(nlist=256,m=48)") == ["flat", "ivf_pq(nlist=256,m=48)"]
    with pytest.raises(ValueError, match="unbalanced"):
        split_specs("ivf_pq(nlist=2")


def test_cli_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "bench", "--data", "sample", "--specs", "flat", "--peers", "numpy", "--k", "1,10",
        "--queries", "5", "--repeats", "1", "--latency-queries", "3", "--out",
        str(tmp_path), "--no-progress",
    ])
    assert code == 0
    assert "`flat`" in capsys.readouterr().out
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["dataset"]["nq"] == 5
    assert data["results"][0]["recall"]["10"] == 1.0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "--specs", "no_such_index"], "no_such_index"),
        (["bench", "--peers", "annoyx"], "annoyx"),
        (["bench", "--threads", "two"], "--threads"),
        (["bench", "--k", "0"], "--k"),
        (["bench", "--data", "/nonexistent/path.npy"], "/nonexistent"),
        (["frobnicate"], "frobnicate"),
        ([], "command"),
    ],
)
def test_cli_bad_args_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vecindex: error:") and needle in err
    assert err.count("\n") == 1


def test_cli_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "flat (exact)" in out and "threads:" in out
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "flat" in [k["name"] for k in data["indexes"]]


def test_import_does_not_load_heavy_dependencies() -> None:
    heavy = ("faiss", "hnswlib", "turbovec", "matplotlib", "tqdm", "h5py", "torch")
    code = (
        "import sys, vecindex_core, vecindex_core.bench, vecindex_core.cli, "
        "vecindex_core.demo; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
        env=env,
    ).stdout
    assert out.strip() == "[]"
