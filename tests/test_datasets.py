"""CIFAR-10 loading: both formats, folders and archives, cache, download, bad input."""

import hashlib
import tarfile

import numpy as np
import pytest
import torch

from cosim.bnn import datasets
from cosim.bnn.datasets import (CLASSES, MEAN, STD, load_cifar10, resolve_data_path, synthetic_arrays, to_tensor,
                            write_synthetic)
from cosim.errors import DataError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COSIM_CACHE", str(tmp_path / "cache"))


def _one_line(e):
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("fmt", ["folder", "python"])
@pytest.mark.parametrize("archive", [False, True])
def test_both_formats_load_as_folder_and_archive(tmp_path, fmt, archive):
    path = write_synthetic(tmp_path / "d", fmt=fmt, n_train_per_class=3, n_test_per_class=2, seed=5,
                           archive=archive)
    assert path.is_file() == archive
    for split, n, seed in (("train", 3, 5), ("test", 2, 6)):
        images, labels = load_cifar10(path, split=split)
        want_x, want_y = synthetic_arrays(n, seed)
        assert images.dtype == np.uint8 and images.shape == (10 * n, 32, 32, 3)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, want_y)
        np.testing.assert_array_equal(images, want_x)  # PNG and the batch files are lossless


def test_jpeg_folder_tree_and_class_interleaved_order(tmp_path):
    path = write_synthetic(tmp_path, fmt="folder", n_test_per_class=3, image_ext=".jpg")
    images, labels = load_cifar10(path, split="test")
    assert list(labels[:10]) == list(range(10))  # every prefix is class-balanced
    want, _ = synthetic_arrays(3, 1)
    assert not np.array_equal(images, want)  # lossy JPEG, but the same pictures: same mean colours
    np.testing.assert_allclose(images.mean(axis=(1, 2)), want.mean(axis=(1, 2)), atol=4)


def test_second_load_comes_from_cache(tmp_path, monkeypatch):
    path = write_synthetic(tmp_path, fmt="folder", archive=True)
    first = load_cifar10(path, split="test")
    assert list((tmp_path / "cache" / "cifar10").glob("*.npz"))

    def no_decode(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(datasets, "_decode", no_decode)
    second = load_cifar10(path, split="test")
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_truncated_archive_is_one_line_error(tmp_path):
    for fmt in ("folder", "python"):
        path = write_synthetic(tmp_path / fmt, fmt=fmt, n_train_per_class=4, archive=True)
        data = path.read_bytes()
        bad = tmp_path / f"{fmt}-truncated.tar.gz"
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError) as e:
            load_cifar10(bad, split="test")
        assert "truncated or corrupt" in _one_line(e)


def test_folder_in_neither_format_is_one_line_error(tmp_path):
    (tmp_path / "junk" / "stuff").mkdir(parents=True)
    (tmp_path / "junk" / "stuff" / "readme.txt").write_text("not cifar")
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "junk")
    assert "neither CIFAR-10 format" in _one_line(e)
    tar = tmp_path / "junk.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "junk", arcname="junk")
    with pytest.raises(DataError) as e:
        load_cifar10(tar)
    assert "neither CIFAR-10 format" in _one_line(e)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "missing.tar.gz")
    assert "does not exist" in _one_line(e)
    with pytest.raises(DataError):
        load_cifar10(tmp_path, split="validation")
    # a class folder that is not a CIFAR-10 class
    path = write_synthetic(tmp_path / "a", fmt="folder")
    (path / "test" / "dog").rename(path / "test" / "wolf")
    with pytest.raises(DataError) as e:
        load_cifar10(path)
    assert "wolf" in _one_line(e)
    # a corrupt image file
    path = write_synthetic(tmp_path / "b", fmt="folder")
    (path / "test" / "cat" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        load_cifar10(path)
    assert "cat/0000.png" in _one_line(e)
    # a corrupt batch file
    path = write_synthetic(tmp_path / "c", fmt="python")
    (path / "test_batch").write_bytes((path / "test_batch").read_bytes()[:100])
    with pytest.raises(DataError) as e:
        load_cifar10(path)
    assert "test_batch" in _one_line(e)


def test_batch_files_may_not_hold_arbitrary_objects(tmp_path):
    import pickle

    root = tmp_path / "evil"
    root.mkdir()
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": Exception("x"), b"labels": []}, f)
    with pytest.raises(DataError):
        load_cifar10(root)


def test_path_from_environment_and_download(tmp_path, monkeypatch):
    src = write_synthetic(tmp_path / "src", fmt="python", archive=True)
    monkeypatch.setenv("COSIM_DATA", str(src))
    assert resolve_data_path(None) == src
    monkeypatch.setenv("COSIM_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as e:
        load_cifar10()
    assert "COSIM_DATA" in _one_line(e)
    # no path and no default copy: download (here from a file:// URL) into the cache
    monkeypatch.delenv("COSIM_DATA")
    monkeypatch.setenv("COSIM_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setattr(datasets, "OFFICIAL_URL", src.as_uri())
    monkeypatch.setattr(datasets, "OFFICIAL_MD5", hashlib.md5(src.read_bytes()).hexdigest())
    images, labels = load_cifar10(split="test")
    assert images.shape == (20, 32, 32, 3)
    assert (tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz").is_file()
    # offline: a one-line error that says how to point cosim at a copy
    (tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz").unlink()
    monkeypatch.setattr(datasets, "OFFICIAL_URL", (tmp_path / "unreachable.tar.gz").as_uri())
    with pytest.raises(DataError) as e:
        load_cifar10(split="test", use_cache=False)
    msg = _one_line(e)
    assert "download" in msg and "--data" in msg and "COSIM_DATA" in msg


def test_to_tensor_normalises():
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    images[1] = 255
    x = to_tensor(images)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    for c in range(3):
        assert x[0, c, 0, 0].item() == pytest.approx(-MEAN[c] / STD[c], rel=1e-6)
        assert x[1, c, 5, 7].item() == pytest.approx((1 - MEAN[c]) / STD[c], rel=1e-6)
    with pytest.raises(DataError):
        to_tensor(np.zeros((2, 3, 32, 32), dtype=np.uint8))
    assert len(CLASSES) == 10
