"""Every script in ``examples/`` runs offline, and the three frameworks agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = ["langchain_rag.py", "llamaindex_rag.py", "haystack_rag.py", "frameworks.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.strip()


def test_frameworks_agree() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import frameworks
    finally:
        sys.path.remove(str(EXAMPLES))
    answers = [frameworks.load(f).run(query=3, k=5) for f in frameworks.EXAMPLES.values()]
    texts = [[t for t, _ in a] for a in answers]
    assert len(texts[0]) == 5 and texts[0] == texts[1] == texts[2]
