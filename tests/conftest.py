import os

import numpy as np
import pytest

# Keep torch on the 2 cores CI has, and results reproducible.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
