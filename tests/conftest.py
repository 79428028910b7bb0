import numpy as np
import pytest

from vecindex_core.datasets import load_sample


@pytest.fixture(scope="session")
def sample():
    """The bundled real sample (5,000 MiniLM embeddings, 200 queries, exact top-100)."""
    return load_sample()


@pytest.fixture(scope="session")
def small(sample):
    """A 1,000-row slice of the sample with 20 queries (fast enough for every spec)."""
    return sample.base[:1000], sample.queries[:20]


@pytest.fixture
def rng():
    return np.random.default_rng(0)
