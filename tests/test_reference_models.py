"""The reference weights (../shared/models) load exactly and reproduce their accuracy.

Skipped when the shared folder (weights or the CIFAR-10 archive) is absent. The default suite checks
a fixed, class-balanced subset (the first SUBSET test images of the image-folder archive, in cosim's
class-interleaved order) against counts measured once with the same code; the full 10,000-image check
against summary.json is slow (minutes on 2 cores) and runs with ``-m slow``.
"""

import json

import numpy as np
import pytest
import torch

from cosim.bnn.evaluate import evaluate, predict
from cosim.bnn.fold import deploy
from cosim.bnn.models import SUMMARY_KEYS, load_reference, reference_path
from cosim.bnn.datasets import load_cifar10, to_tensor
from cosim.paths import reference_models_dir

torch.set_num_threads(2)

pytestmark = pytest.mark.shared

SUBSET = 250
#: correct answers on the first SUBSET test images of cifar10-jpeg.tar.gz, measured on this machine's CPU
#: (float32) with cosim.bnn.evaluate: vgg-small 225/250 = 0.900, resnet18 211/250 = 0.844
SUBSET_CORRECT = {"vgg-small": 225, "resnet18": 211}


@pytest.fixture(scope="module")
def test_set():
    return load_cifar10(split="test")


@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_reference_loads_exactly(name):
    model = load_reference(name)
    state = torch.load(reference_path(name), map_location="cpu", weights_only=True)
    mine = model.state_dict()
    assert set(mine) == set(state)
    for k, v in state.items():
        if v.dtype == torch.int8:  # binary weights: +-1, loaded as the same signs
            assert set(v.unique().tolist()) <= {-1, 1}
        assert torch.equal(mine[k].to(v.dtype), v), k


@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_reference_subset_accuracy(name, test_set):
    images, labels = test_set
    assert np.bincount(labels[:SUBSET]).tolist() == [SUBSET // 10] * 10
    result = evaluate(load_reference(name), images, labels, limit=SUBSET)
    assert result["n"] == SUBSET
    # exact count, give or take one image for a different CPU's float32 rounding in the first layer
    assert abs(result["correct"] - SUBSET_CORRECT[name]) <= 1, result


def test_reference_vgg_folded_form_gives_identical_logits(test_set):
    images, _ = test_set
    model = load_reference("vgg-small")
    x = to_tensor(images[:40])
    with torch.inference_mode():
        assert torch.equal(deploy(model)(x), model(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_reference_full_test_accuracy_matches_summary(name, test_set):
    summary = json.loads((reference_models_dir() / "summary.json").read_text())
    want = summary[SUMMARY_KEYS[name]]["test_acc"]
    images, labels = test_set
    result = evaluate(load_reference(name), images, labels)
    assert result["n"] == 10000
    assert abs(result["accuracy"] - want) <= 0.001, (result, want)


@pytest.mark.slow
def test_reference_vgg_folded_form_full_test_set(test_set):
    images, labels = test_set
    folded = deploy(load_reference("vgg-small"))
    logits = predict(folded, images)
    assert (logits.argmax(1) == labels).mean() == pytest.approx(
        json.loads((reference_models_dir() / "summary.json").read_text())["vgg_small"]["test_acc"], abs=0.001)
