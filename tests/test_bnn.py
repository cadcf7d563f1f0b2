"""Binary networks on tiny synthetic data: architecture, training, threshold folding, checkpoints, CLI."""

import json

import pytest
import torch
from torch import nn

from cosim.bnn.checkpoint import load_checkpoint, save_checkpoint
from cosim.bnn.evaluate import evaluate
from cosim.bnn.fold import IntThreshold, deploy, fold_bn_sign
from cosim.bnn.layers import BinConv2d
from cosim.bnn.models import ResNet18, build_model, load_reference
from cosim.bnn.train import TrainConfig, augment, make_optimizer, state_path, train, train_step
from cosim.bnn.datasets import synthetic_arrays, to_tensor, write_synthetic
from cosim.errors import DataError, InputError

torch.set_num_threads(2)


def _one_line(e):
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def _randomise_bn(model, seed=0, negative=True):
    """Random running statistics and affine parameters, some gammas negative and some zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                k = 3.0 * (c ** 0.5) * 3
                m.running_mean.copy_(torch.randn(c, generator=g) * k / 4)
                m.running_var.copy_(torch.rand(c, generator=g) * k * k / 4 + 1)
                m.weight.copy_(torch.randn(c, generator=g))
                if negative:
                    m.weight[: c // 3] = -m.weight[: c // 3].abs()
                    m.weight[c // 3: c // 3 + 2] = 0.0
                m.bias.copy_(torch.randn(c, generator=g) * 0.5)
    return model.eval()


# ------------------------------------------------------------------------------------------ architecture

def test_architectures_match_the_reference_layout():
    vgg = build_model("vgg-small")
    assert isinstance(vgg, nn.Sequential) and len(vgg) == 17
    assert [i for i, m in enumerate(vgg) if isinstance(m, BinConv2d)] == [2, 5, 7, 10, 12]
    assert [i for i, m in enumerate(vgg) if isinstance(m, nn.MaxPool2d)] == [3, 8, 13]
    assert [i for i, m in enumerate(vgg) if isinstance(m, nn.BatchNorm2d)] == [1, 4, 6, 9, 11, 14]
    assert vgg[16].in_features == 8192
    res = build_model("resnet18")
    keys = set(res.state_dict())
    assert len(res.blocks) == 16
    assert {"stem.0.weight", "stem.1.running_var", "blocks.0.conv.weight", "blocks.4.down.1.weight",
            "blocks.4.down.2.weight", "fc.weight"} <= keys
    assert [k for k in range(16) if res.blocks[k].down is not None] == [4, 8, 12]
    assert isinstance(res.blocks[4].down[0], nn.AvgPool2d) and res.blocks[4].conv.stride == (2, 2)
    with torch.no_grad():
        assert vgg(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert res.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(InputError):
        build_model("alexnet")


def test_binconv_pads_the_binarized_input_with_minus_one():
    conv = BinConv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(0.3)  # sign +1
    out = conv(torch.full((1, 1, 4, 4), 0.5))  # sign +1 inside, -1 in the padding
    assert out[0, 0, 0, 0].item() == 4 - 5  # corner: 4 inputs of +1, 5 padded -1
    assert out[0, 0, 1, 1].item() == 9
    assert out[0, 0, 0, 1].item() == 6 - 3


def test_missing_reference_weights_are_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("COSIM_MODELS", str(tmp_path))
    with pytest.raises(DataError) as e:
        load_reference("vgg-small")
    assert "COSIM_MODELS" in _one_line(e)


# -------------------------------------------------------------------------------------------- training

@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_one_training_step_lowers_the_loss(name):
    torch.manual_seed(0)
    model = build_model(name)
    images, labels = synthetic_arrays(1, seed=3)  # 10 images, one per class
    x, y = to_tensor(images), torch.as_tensor(labels)
    # a small step: Adam's first step moves every latent weight by ~lr, and a large lr flips many signs
    opt = make_optimizer(model, TrainConfig(model=name, lr=1e-4))
    before = train_step(model, opt, x, y)
    with torch.no_grad():
        after = nn.functional.cross_entropy(model(x), y).item()  # train mode: same batch statistics
    assert after < before


def test_augment_is_a_crop_and_flip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment(x, torch.Generator().manual_seed(0), pad=0)
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    out = augment(x, torch.Generator().manual_seed(1), pad=2)
    assert out.shape == x.shape


def test_train_writes_checkpoints_and_resumes_exactly(tmp_path):
    x_train, y_train = synthetic_arrays(1, seed=0)
    x_test, y_test = synthetic_arrays(1, seed=1)
    # 4 images, one batch per epoch: small, but the resumed run must replay shuffling and augmentation
    cfg = dict(model="vgg-small", epochs=2, batch_size=4, lr=5e-3, device="cpu", limit=4, test_limit=4,
               eval_every=0)
    straight = train(TrainConfig(**cfg), x_train, y_train, x_test, y_test, tmp_path / "a.ckpt", progress=False,
                     log=lambda m: None)
    assert straight.epochs_done == 2 and straight.test["n"] == 4
    assert (tmp_path / "a.ckpt").is_file() and state_path(tmp_path / "a.ckpt").is_file()

    def interrupt_after_first_epoch(msg):
        if "epoch 1/2" in msg:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**cfg), x_train, y_train, x_test, y_test, tmp_path / "b.ckpt", progress=False,
              log=interrupt_after_first_epoch)
    resumed = train(TrainConfig(**cfg), x_train, y_train, x_test, y_test, tmp_path / "b.ckpt", progress=False,
                    log=lambda m: None)
    assert resumed.resumed_from == 0 and resumed.epochs_done == 2
    sa = torch.load(state_path(tmp_path / "a.ckpt"), weights_only=True)["model_state"]
    sb = torch.load(state_path(tmp_path / "b.ckpt"), weights_only=True)["model_state"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    model, meta = load_checkpoint(tmp_path / "b.ckpt")
    assert meta["model"] == "vgg-small" and meta["epochs"] == 2 and meta["test_n"] == 4
    assert "provenance" in meta and meta["config"]["seed"] == 0
    # a finished run with the same settings has nothing to do; other settings are refused
    again = train(TrainConfig(**cfg), x_train, y_train, None, None, tmp_path / "b.ckpt", progress=False,
                  log=lambda m: None)
    assert again.resumed_from == 2
    with pytest.raises(DataError) as e:
        train(TrainConfig(**{**cfg, "lr": 1e-3}), x_train, y_train, None, None, tmp_path / "b.ckpt",
              progress=False, log=lambda m: None)
    assert "--fresh" in _one_line(e)


# --------------------------------------------------------------------------------------------- folding

@pytest.mark.parametrize("k", [9, 36, 1152])
def test_fold_bn_sign_is_exact_for_every_integer(k):
    bn = _randomise_bn(nn.Sequential(nn.BatchNorm2d(64)), seed=k)[0]
    with torch.no_grad():  # thresholds landing exactly on integers, and constant channels
        bn.running_mean[10:14] = torch.tensor([3.0, -5.0, 0.0, 7.0])
        bn.bias[10:14] = 0.0
        bn.weight[14], bn.bias[14] = 1.0, 50.0 * k   # always on
        bn.weight[15], bn.bias[15] = 1.0, -50.0 * k  # never on
        bn.weight[16], bn.bias[16] = 0.0, -0.1       # gamma 0, off
    thr = fold_bn_sign(bn, k)
    assert isinstance(thr, IntThreshold) and thr.threshold.dtype == torch.int64
    assert (thr.direction == -1).sum() > 5
    p = torch.arange(-k, k + 1, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 64, -1, 1).contiguous()
    with torch.no_grad():
        want = torch.where(bn(p) >= 0, 1.0, -1.0)
    assert torch.equal(thr(p), want)


def test_fold_bn_sign_without_affine_parameters():
    """A BatchNorm2d(affine=False) (weight and bias None) folds too; it raised an AttributeError
    (None.float()) before mypy pointed at it."""
    k = 9
    bn = nn.BatchNorm2d(8, affine=False).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.linspace(-4.0, 4.0, 8))
        bn.running_var.copy_(torch.linspace(0.5, 3.0, 8))
    thr = fold_bn_sign(bn, k)
    p = torch.arange(-k, k + 1, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 8, -1, 1).contiguous()
    with torch.no_grad():
        want = torch.where(bn(p) >= 0, 1.0, -1.0)
    assert torch.equal(thr(p), want)
    assert (thr(p) == 1).any() and (thr(p) == -1).any()


def test_folded_vgg_small_gives_identical_logits():
    torch.manual_seed(1)
    model = _randomise_bn(build_model("vgg-small"), seed=2)
    folded = deploy(model)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        assert torch.equal(folded(x), logits)
        # every binary activation is the float network's sign(BN(...)), including after MaxPool + negative gamma
        acts = folded.binary_activations(x)
        h = x
        float_acts = []
        for i, m in enumerate(model):
            if isinstance(m, BinConv2d):
                float_acts.append(torch.where(h >= 0, 1.0, -1.0))
            h = m(h)
    assert len(acts) == 5
    for a, b in zip(acts, float_acts):
        assert torch.equal(a, b)
    with pytest.raises(InputError) as e:
        deploy(ResNet18())
    assert "residual" in _one_line(e)


# ------------------------------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_compact_checkpoint_round_trip(tmp_path, name):
    torch.manual_seed(3)
    model = _randomise_bn(build_model(name), seed=4, negative=False)
    path = save_checkpoint(model, tmp_path / "m.ckpt", meta={"note": "test"})
    loaded, meta = load_checkpoint(path, model=name)
    assert meta["model"] == name and meta["note"] == "test" and meta["checkpoint_kind"] == "compact"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    # binary weights are packed bits: far smaller than the float state dict
    torch.save(model.state_dict(), tmp_path / "full.pt")
    assert path.stat().st_size < 0.4 * (tmp_path / "full.pt").stat().st_size
    # a plain state dict loads too
    loaded2, meta2 = load_checkpoint(tmp_path / "full.pt")
    assert meta2["model"] == name and meta2["checkpoint_kind"] == "state_dict"


def test_wrong_or_damaged_checkpoints_are_one_line_errors(tmp_path):
    path = save_checkpoint(build_model("vgg-small"), tmp_path / "vgg.ckpt")
    with pytest.raises(DataError) as e:
        load_checkpoint(path, model="resnet18")
    assert "vgg-small" in _one_line(e)
    torch.save(build_model("resnet18").state_dict(), tmp_path / "res.pt")
    with pytest.raises(DataError) as e:
        load_checkpoint(tmp_path / "res.pt", model="vgg-small")
    assert "looks like resnet18" in _one_line(e)
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(DataError) as e:
        load_checkpoint(tmp_path / "other.pt")
    _one_line(e)
    data = path.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError) as e:
        load_checkpoint(tmp_path / "cut.ckpt")
    assert "cannot read" in _one_line(e)


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_eval_and_train_on_synthetic_data(tmp_path, capsys, monkeypatch):
    from cosim.cli import main

    monkeypatch.setenv("COSIM_CACHE", str(tmp_path / "cache"))
    data = write_synthetic(tmp_path, fmt="python", n_train_per_class=1, n_test_per_class=1, archive=True)
    ckpt = tmp_path / "vgg.ckpt"
    main(["train", "--model", "vgg-small", "--data", str(data), "--epochs", "1", "--out", str(ckpt),
          "--batch-size", "10", "--device", "cpu", "--no-progress", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["epochs"] == 1 and out["n"] == 10 and 0 <= out["accuracy"] <= 1
    main(["eval", "--model", "vgg-small", "--checkpoint", str(ckpt), "--data", str(data), "--limit", "7", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 7 and 0 <= res["accuracy"] <= 1 and "provenance" in res
    model, _ = load_checkpoint(ckpt)
    x, y = synthetic_arrays(1, seed=1)
    assert res["accuracy"] == evaluate(model, x, y, limit=7)["accuracy"]
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", "resnet18", "--checkpoint", str(ckpt), "--data", str(data), "--json"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
