"""The same query answered through LangChain, LlamaIndex and Haystack, side by side.

Each framework's example (``langchain_rag.py``, ``llamaindex_rag.py``, ``haystack_rag.py``)
loads the bundled WordNet sample (precomputed MiniLM vectors, no network, no model) into a
vecindex store and answers query ``--query`` with the top ``--k`` passages. All three go
through the same :class:`vecindex_core.Collection`, so they must agree: this script prints
their answers next to each other and exits non-zero if they differ.

Run: ``python examples/frameworks.py [--query 0] [--k 3]`` (``make demo`` runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
EXAMPLES = {
    "LangChain": "langchain_rag.py",
    "LlamaIndex": "llamaindex_rag.py",
    "Haystack": "haystack_rag.py",
}


def load(name: str) -> ModuleType:
    """Import an example script by file name."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), HERE / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--query", type=int, default=0)
    ap.add_argument("--k", type=int, default=3)
    args = ap.parse_args(argv)

    from vecindex_core.datasets import load_sample

    sample = load_sample()
    assert sample.query_texts is not None
    print(f"query {args.query}: {sample.query_texts[args.query]}")
    answers = {}
    for framework, file in EXAMPLES.items():
        answers[framework] = load(file).run(query=args.query, k=args.k)
        print(f"\n{framework} ({file}):")
        for rank, (text, score) in enumerate(answers[framework], 1):
            short = text if len(text) <= 100 else text[:97] + "..."
            print(f"  {rank}. {score:.3f}  {short}")
    texts = {framework: [t for t, _ in hits] for framework, hits in answers.items()}
    agree = len({tuple(v) for v in texts.values()}) == 1
    print(f"\nall three frameworks return the same passages: {agree}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
