import os

import numpy as np
import pytest

# Keep torch on the 2 cores CI has, and results reproducible.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def shared_ready() -> bool:
    """The reference weights of both networks and CIFAR-10 are where cosim looks for them."""
    from cosim.bnn.models import REFERENCE_FILES
    from cosim.paths import default_data_path, reference_models_dir
    return all((reference_models_dir() / f).is_file() for f in REFERENCE_FILES.values()) and default_data_path().exists()


def pytest_collection_modifyitems(config, items):
    """The ``ngspice`` and ``shared`` markers are real skips where ngspice or the shared files are missing."""
    wanted = {m for item in items for m in ("ngspice", "shared") if item.get_closest_marker(m)}
    missing = {}
    if "ngspice" in wanted:
        from cosim.circuit.spice import ngspice_info
        if ngspice_info()["executable"] is None:
            missing["ngspice"] = "ngspice not installed"
    if "shared" in wanted and not shared_ready():
        missing["shared"] = "shared reference weights / CIFAR-10 not found"
    for item in items:
        for marker, reason in missing.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
