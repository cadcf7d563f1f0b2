"""CIFAR-10 loading: image-folder trees and the official "python version", as folders or archives.

Accepted layouts (``path`` is a folder or a tar archive, ``.tar.gz``/``.tgz``/``.tar``):

* image-folder tree: ``train/<class>/*.jpg|jpeg|png`` and ``test/<class>/*`` (possibly under one
  top-level folder), class names those of CIFAR-10 (``CLASSES``). Images are decoded with Pillow
  as RGB. Returned in *class-interleaved* order (round robin over classes, files in name order), so
  every prefix ``[:n]`` is class-balanced.
* official python version: ``data_batch_1..5`` and ``test_batch`` (pickled dicts with ``data`` and
  ``labels``), as published at ``OFFICIAL_URL`` (inside ``cifar-10-batches-py/``). Returned in the
  file order.

Decoded arrays are cached as ``.npz`` under ``cosim.paths.cache_dir()/cifar10/``, keyed by the
source's path, size and modification time, so a second load is fast. Where no path is given, the
path comes from ``$COSIM_DATA`` (``cosim.paths.default_data_path()``); if that default does not
exist, the official archive is downloaded into the cache (when the network is reachable).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path
from ..paths import cache_dir, default_data_path

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: per-channel normalisation of the reference weights (shared/models/README.md)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
DOWNLOAD_TIMEOUT_S = 20.0

_IMAGE_EXT = (".jpg", ".jpeg", ".png")
_PY_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CACHE_FORMAT = 2  # bump when the decoded layout or order changes
_HOW_TO_POINT = ("pass --data PATH (or path=...) or set COSIM_DATA to a copy of CIFAR-10: an image-folder "
                 "tree train|test/<class>/*.jpg or the official python version (data_batch_1..5, test_batch), "
                 "as a folder or .tar.gz")


# ----------------------------------------------------------------------------------------------- public

def load_cifar10(path: str | os.PathLike | None = None, split: str = "test",
                 use_cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` ("train" or "test") as (images uint8 N,32,32,3 RGB, labels int64 N)."""
    if split not in SPLITS:
        raise DataError(f"unknown CIFAR-10 split {split!r}; choose one of {', '.join(SPLITS)}")
    source = resolve_data_path(path)
    key = _cache_key(source, split)
    cached = _cache_file(key)
    if use_cache and cached is not None and cached.is_file():
        try:
            with np.load(cached) as z:
                images, labels = z["images"], z["labels"]
            _check_arrays(images, labels, str(source))
            return images, labels
        except (OSError, ValueError, KeyError, zlib.error, DataError):
            pass  # a damaged cache entry is simply rebuilt
    images, labels = _decode(source, split)
    if use_cache and cached is not None:
        _write_cache(cached, images, labels)
    return images, labels


def to_tensor(images, device="cpu"):
    """uint8 N,32,32,3 (numpy or torch) -> normalised float32 tensor N,3,32,32 (README mean/std)."""
    import torch

    x = torch.as_tensor(images)
    if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE or x.dtype != torch.uint8:
        raise DataError(f"expected uint8 images of shape N,32,32,3, got {x.dtype} {tuple(x.shape)}")
    return normalise(x.to(device).permute(0, 3, 1, 2))


def normalise(x_uint8):
    """uint8 N,3,H,W tensor on any device -> normalised float32 (README mean/std)."""
    import torch

    mean = torch.tensor(MEAN, dtype=torch.float32, device=x_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32, device=x_uint8.device).view(1, 3, 1, 1)
    return (x_uint8.float() / 255.0 - mean) / std


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """The CIFAR-10 source to read: ``path``, else $COSIM_DATA, else a download into the cache."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"CIFAR-10 path {p} does not exist; {_HOW_TO_POINT}")
        return p
    p = default_data_path()
    if p.exists():
        return p
    if os.environ.get("COSIM_DATA"):
        raise DataError(f"COSIM_DATA={os.environ['COSIM_DATA']} does not exist; {_HOW_TO_POINT}")
    return download_cifar10()


def download_cifar10(url: str | None = None, md5: str | None = None) -> Path:
    """Download the official python-version archive into the cache (once); its path."""
    url = url or OFFICIAL_URL
    md5 = OFFICIAL_MD5 if (md5 is None and url == OFFICIAL_URL) else md5
    dest = cache_dir() / "cifar10" / "cifar-10-python.tar.gz"
    if dest.is_file() and (md5 is None or _md5(dest) == md5):
        return dest
    tmp_path = dest.parent / (dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(tmp_path, "wb") as tmp:
            while chunk := resp.read(1 << 20):
                tmp.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp_path.unlink(missing_ok=True)
        reason = _one_line(getattr(e, "reason", e))
        raise DataError(f"no CIFAR-10 at {default_data_path()} and download from {url} failed ({reason}); "
                        f"{_HOW_TO_POINT}") from None
    if md5 is not None and _md5(tmp_path) != md5:
        tmp_path.unlink(missing_ok=True)
        raise DataError(f"download from {url} has the wrong checksum (expected md5 {md5}); {_HOW_TO_POINT}")
    os.replace(tmp_path, dest)
    return dest


# ---------------------------------------------------------------------------------------------- decoding

def _decode(source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if source.is_dir():
        images, labels = _decode_dir(source, split)
    elif source.is_file():
        images, labels = _decode_archive(source, split)
    else:
        raise DataError(f"CIFAR-10 path {source} is neither a folder nor a file")
    _check_arrays(images, labels, str(source))
    return images, labels


def _decode_dir(root: Path, split: str):
    # official python version: the batch files in root or one level down
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (base / "test_batch").is_file() or (base / "data_batch_1").is_file():
            blobs = {}
            for name in _PY_FILES[split]:
                f = base / name
                if not f.is_file():
                    raise DataError(f"{base} looks like the official CIFAR-10 python version but lacks {name}")
                blobs[name] = f.read_bytes()
            return _from_batches(blobs, split, str(base))
    # image-folder tree: <root>/<split>/<class>/ or one level down
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        split_dir = base / split
        if split_dir.is_dir() and any(d.is_dir() for d in split_dir.iterdir()):
            files: dict[str, list[tuple[str, bytes | Path]]] = {}
            for cls_dir in sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
                files[cls_dir.name] = [(f.name, f) for f in sorted(cls_dir.iterdir())
                                       if f.suffix.lower() in _IMAGE_EXT and not f.name.startswith(".")]
            return _from_image_files(files, f"{split_dir}")
    raise DataError(f"{root} is in neither CIFAR-10 format (no {split}/<class>/ image folders, no "
                    f"data_batch_N/test_batch files); {_HOW_TO_POINT}")


def _end_marking_tarinfo() -> Any:
    """A TarInfo class that notes whether the archive's end-of-archive block (a block of zeros) was
    read: an archive cut at a member boundary reads as a shorter, valid one without it."""

    class _TarInfo(tarfile.TarInfo):
        ended = False

        @classmethod
        def frombuf(cls, buf, encoding, errors):
            if len(buf) == tarfile.BLOCKSIZE and buf.count(tarfile.NUL) == tarfile.BLOCKSIZE:
                _TarInfo.ended = True
            return super().frombuf(buf, encoding, errors)

    return _TarInfo


def _decode_archive(path: Path, split: str):
    batches: dict[str, bytes] = {}
    images: dict[str, list[tuple[str, bytes]]] = {}
    marker = _end_marking_tarinfo()
    members = 0
    try:
        with tarfile.open(path, mode="r|*", tarinfo=marker) as tar:
            for m in tar:
                members += 1
                if not m.isfile():
                    continue
                parts = PurePosixPath(m.name).parts
                name = parts[-1] if parts else ""
                if name in _PY_FILES[split]:
                    batches[name] = tar.extractfile(m).read()  # type: ignore[union-attr]  # a file member
                elif (len(parts) >= 3 and parts[-3] == split and name.lower().endswith(_IMAGE_EXT)
                      and not name.startswith(".") and not parts[-2].startswith(".")):
                    images.setdefault(parts[-2], []).append((name, tar.extractfile(m).read()))  # type: ignore[union-attr]  # a file
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"cannot read CIFAR-10 archive {path}: truncated or corrupt ({_one_line(e)})") from None
    if not marker.ended:
        raise DataError(f"cannot read CIFAR-10 archive {path}: truncated (it ends after {members} member(s), "
                        "without the end-of-archive block); copy or download it again")
    if batches and images:
        raise DataError(f"archive {path} holds both CIFAR-10 formats; unpack the one you mean and point at it")
    if batches:
        missing = [n for n in _PY_FILES[split] if n not in batches]
        if missing:
            raise DataError(f"archive {path} looks like the official CIFAR-10 python version but lacks "
                            f"{', '.join(missing)}")
        return _from_batches(batches, split, str(path))
    if images:
        return _from_image_files({c: sorted(v) for c, v in images.items()}, f"{path}:{split}/")
    raise DataError(f"archive {path} is in neither CIFAR-10 format (no {split}/<class>/ images, no "
                    f"data_batch_N/test_batch files); {_HOW_TO_POINT}")


def _from_image_files(files: dict[str, list], where: str):
    from PIL import Image, UnidentifiedImageError

    unknown = sorted(set(files) - set(CLASSES))
    if unknown:
        raise DataError(f"{where} has class folders that are not CIFAR-10 classes: {', '.join(unknown[:5])}")
    per_class = [files.get(c, []) for c in CLASSES]
    if not any(per_class):
        raise DataError(f"{where} has no images")
    order = []  # round robin over classes: every prefix is class-balanced
    for i in range(max(len(v) for v in per_class)):
        for label, v in enumerate(per_class):
            if i < len(v):
                order.append((label, v[i]))
    images = np.empty((len(order), *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty(len(order), dtype=np.int64)
    for k, (label, (name, src)) in enumerate(order):
        try:
            with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"cannot decode image {where}{CLASSES[label]}/{name}: {_one_line(e)}") from None
        if arr.shape != IMAGE_SHAPE:
            raise DataError(f"image {where}{CLASSES[label]}/{name} is {arr.shape[1]}x{arr.shape[0]}, "
                            f"CIFAR-10 images are 32x32")
        images[k] = arr
        labels[k] = label
    return images, labels


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batch files, allowing only what they contain (numpy arrays, lists, dicts)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch file")


def _from_batches(blobs: dict[str, bytes], split: str, where: str):
    xs, ys = [], []
    for name in _PY_FILES[split]:
        try:
            d = _BatchUnpickler(io.BytesIO(blobs[name]), encoding="bytes").load()
            d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
            x = np.asarray(d["data"], dtype=np.uint8)
            y = np.asarray(d["labels"], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError,
                IndexError) as e:
            raise DataError(f"cannot read CIFAR-10 batch {where}/{name}: truncated or corrupt "
                            f"({_one_line(e)})") from None
        if x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
            raise DataError(f"CIFAR-10 batch {where}/{name} has data {x.shape} and {len(y)} labels; "
                            f"expected N x 3072 and N labels")
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def _check_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: decoded images have shape {images.shape}, expected N,32,32,3 uint8")
    if labels.shape != (len(images),) or (len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES))):
        raise DataError(f"{where}: labels do not match the images or lie outside 0..9")


# ------------------------------------------------------------------------------------------------ cache

def _cache_key(source: Path, split: str) -> str | None:
    try:
        src = source.resolve()
        if src.is_file():
            st = src.stat()
            ident = f"file|{src}|{st.st_size}|{st.st_mtime_ns}"
        else:
            entries = []
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                for f in sorted(filenames):
                    st = os.stat(os.path.join(dirpath, f))
                    entries.append(f"{os.path.relpath(os.path.join(dirpath, f), src)}|{st.st_size}|{st.st_mtime_ns}")
            ident = f"dir|{src}|" + "\n".join(entries)
    except OSError:
        return None
    return hashlib.sha256(f"{_CACHE_FORMAT}|{split}|{ident}".encode()).hexdigest()[:24]


def _cache_file(key: str | None) -> Path | None:
    return None if key is None else cache_dir() / "cifar10" / f"{key}.npz"


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Best effort: an unwritable cache only costs a second decode later."""
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, images=images, labels=labels)
    except OSError:
        pass


def _md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return re.sub(r"\s+", " ", text)[:200]


# ----------------------------------------------------------------------------- synthetic data (tests, demos)

def synthetic_arrays(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (N = 10 * n_per_class, 32x32 RGB) with labels in class-interleaved order;
    each class has its own mean colour, so a network can learn them."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(len(CLASSES), dtype=np.int64), n_per_class)
    base = rng.integers(40, 216, size=(len(CLASSES), 1, 1, 3))
    noise = rng.integers(-40, 41, size=(len(labels), *IMAGE_SHAPE))
    images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_synthetic(root: str | os.PathLike, fmt: str = "folder", n_train_per_class: int = 2,
                    n_test_per_class: int = 2, seed: int = 0, archive: bool = False,
                    image_ext: str = ".png") -> Path:
    """Write a tiny CIFAR-10-format data set; returns the path to pass to ``load_cifar10``.

    ``fmt`` "folder": ``train|test/<class>/NNNN<image_ext>``; "python": the official batch files
    (``cifar-10-batches-py/data_batch_1..5, test_batch``). ``archive``: pack it as ``.tar.gz``.
    The arrays written are ``synthetic_arrays(n, seed)`` (train) and ``synthetic_arrays(n, seed + 1)`` (test).
    """
    from PIL import Image

    root = Path(root)
    tree = root / ("cifar10-synthetic" if fmt == "folder" else "cifar-10-batches-py")
    splits = {"train": synthetic_arrays(n_train_per_class, seed), "test": synthetic_arrays(n_test_per_class, seed + 1)}
    if fmt == "folder":
        for split, (images, labels) in splits.items():
            count: dict[int, int] = {}
            for img, lab in zip(images, labels):
                d = tree / split / CLASSES[lab]
                d.mkdir(parents=True, exist_ok=True)
                k = count.get(lab, 0)
                count[lab] = k + 1
                Image.fromarray(img).save(d / f"{k:04d}{image_ext}")
    elif fmt == "python":
        tree.mkdir(parents=True, exist_ok=True)
        images, labels = splits["train"]
        chunks = np.array_split(np.arange(len(labels)), 5)
        for name, idx in zip(_PY_FILES["train"], chunks):
            _write_batch(tree / name, images[idx], labels[idx])
        _write_batch(tree / "test_batch", *splits["test"])
    else:
        raise DataError(f"unknown synthetic format {fmt!r}; choose folder or python")
    if not archive:
        return tree
    out = root / f"{tree.name}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return out


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"synthetic", b"labels": [int(v) for v in labels], b"data": data,
                     b"filenames": [f"{i:05d}.png".encode() for i in range(len(labels))]}, f, protocol=2)
