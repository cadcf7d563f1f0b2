"""Where cosim finds the files it does not ship: device models, the shared folder, caches.

Every location can be set by an environment variable; nothing is hard-coded beyond a default
relative to the source checkout.

    COSIM_DEVICE_MODELS   folder of ngspice device-model files (default: <checkout>/device_models)
    COSIM_SHARED          folder with docs/, datasets/, models/ (default: <checkout>/../shared)
    COSIM_DATA            CIFAR-10 location (file or folder; default: $COSIM_SHARED/datasets/cifar10-jpeg.tar.gz)
    COSIM_MODELS          folder of reference BNN weights (default: $COSIM_SHARED/models)
    COSIM_CACHE           cache folder (default: ~/.cache/cosim)
    COSIM_BSIMCMG_VA, COSIM_ASAP7_MODELS, COSIM_ASAP7_CORNER   the PDK's compact model (cosim.circuit.bsimcmg)
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else default


def device_models_dir() -> Path:
    return _env_path("COSIM_DEVICE_MODELS", CHECKOUT_DIR / "device_models")


def shared_dir() -> Path:
    return _env_path("COSIM_SHARED", CHECKOUT_DIR.parent / "shared")


def default_data_path() -> Path:
    return _env_path("COSIM_DATA", shared_dir() / "datasets" / "cifar10-jpeg.tar.gz")


def reference_models_dir() -> Path:
    return _env_path("COSIM_MODELS", shared_dir() / "models")


def cache_dir() -> Path:
    return _env_path("COSIM_CACHE", Path("~/.cache/cosim").expanduser())


def resources_dir() -> Path:
    """Small data shipped inside the package: default tables (tables/), checkpoints (checkpoints/)."""
    return PACKAGE_DIR / "resources"


def checkout_relative(path) -> str:
    """``path`` as docs and recorded commands give it: relative to the checkout where it lies inside it (so a
    command reruns from another checkout), else as given."""
    p = Path(path).resolve()
    return str(p.relative_to(CHECKOUT_DIR)) if p.is_relative_to(CHECKOUT_DIR) else str(path)
