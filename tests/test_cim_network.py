"""Whole networks on crossbars: bit-identical ideal mode, surrogate and spice modes, bad input."""


import pytest
import torch
from torch import nn

from cosim.bnn.layers import BinConv2d
from cosim.cim import IdealArray, cim_stats, convert, reset_stats, to_cim
from cosim.cim.synthetic import synthetic_table
from cosim.errors import CosimError, InputError, TableError


def _tiny_net(seed=0, mid=24):
    """Two binary convolutions on 8x8 inputs; the second unrolls to 9 * ``mid`` rows."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), BinConv2d(16, mid, 3, 1, 1),
                        nn.BatchNorm2d(mid), BinConv2d(mid, 20, 3, 2, 1), nn.BatchNorm2d(20), nn.Flatten(),
                        nn.Linear(20 * 4 * 4, 10)).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net


@pytest.mark.parametrize("rows,cols", [(64, 16), (7, 5), (2, 3), (300, 300)])
@pytest.mark.parametrize("binsparx", [False, True])
def test_tiny_network_bit_identical(rows, cols, binsparx):
    net = _tiny_net()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        ref = net(x)
        cim = convert(net, IdealArray(rows), cols, binsparx=binsparx)
        assert torch.equal(cim(x), ref)
        cim_p = convert(net, IdealArray(rows), cols, binsparx=binsparx, max_active_rows=4)
        assert torch.equal(cim_p(x), ref)
    s, sp = cim_stats(cim)["overall"], cim_stats(cim_p)["overall"]
    assert sp["array_reads"] >= s["array_reads"] and sp["on_cell_fraction"] == s["on_cell_fraction"]
    assert sp["max_on_count"] <= 4
    # the original model is untouched
    assert any(isinstance(m, BinConv2d) for m in net.modules())


def test_convert_needs_binary_layers():
    with pytest.raises(InputError):
        convert(nn.Sequential(nn.Linear(3, 3)), IdealArray(8), 8)


def test_stats_reset_and_energy():
    net = _tiny_net()
    tab = synthetic_table("sram8t", 16, 16, samples=800, ir_drop=0.0)
    cim = to_cim(net, tech="sram8t", rows=16, cols=16, mode="ideal", table=tab)
    with torch.no_grad():
        cim(torch.randn(2, 3, 8, 8))
    st = cim_stats(cim)
    e = st["overall"]["array_energy_j"]
    on = sum(l["on_cell_fraction"] * 0 + 1 for l in st["layers"])
    assert on == 2 and e > 0
    # ideal energy = ON cells x i_cell x v_read x t_read (the table has no leakage)
    cells = sum(l.stats.on_cells for _, l in cim.named_modules() if hasattr(l, "matrix"))
    tech = tab.technology()
    assert e == pytest.approx(cells * 20e-6 * tech.v_read_v * tech.t_read_s, rel=1e-9)
    reset_stats(cim)
    assert cim_stats(cim)["overall"]["vectors"] == 0


@pytest.mark.parametrize("binsparx", [False, True])
def test_surrogate_without_ir_drop_is_exact(binsparx):
    """A table of an ideal linear array: the surrogate's ADC codes are the AND-counts, so the
    network output equals the software network's (this checks the wiring of codes and flips)."""
    net = _tiny_net(1)
    tab = synthetic_table("sram8t", 32, 32, samples=2000, ir_drop=0.0)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = net(x)
        cim = to_cim(net, tech="sram8t", rows=32, cols=32, mode="surrogate", table=tab, binsparx=binsparx)
        assert torch.equal(cim(x), ref)
    s = cim_stats(cim)["overall"]
    assert s["array_energy_j"] > 0


def test_surrogate_with_ir_drop_changes_sums_and_binsparx_helps():
    net = _tiny_net(2)
    tab = synthetic_table("sram8t", 64, 64, samples=2000, ir_drop=0.3)
    x = torch.randn(4, 3, 8, 8)
    errs = {}
    with torch.no_grad():
        cim0 = convert(net, IdealArray(64), 64)
        outs0 = []
        cim0[2].register_forward_hook(lambda m, i, o: outs0.append(o))
        cim0(x)
        for bs in (False, True):
            cim = to_cim(net, tech="sram8t", rows=64, cols=64, mode="surrogate", table=tab, binsparx=bs)
            outs = []
            cim[2].register_forward_hook(lambda m, i, o: outs.append(o))
            cim(x)
            errs[bs] = (outs[0] - outs0[0]).abs().mean().item()
    assert errs[False] > 0                 # IR drop lowers the busy columns' codes
    assert errs[True] < errs[False]        # sparser columns: smaller error


def test_adc_bits_and_calibrated_references_run():
    net = _tiny_net(3)
    tab = synthetic_table("sram8t", 32, 32, samples=1500, ir_drop=0.2)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for ref_kind in ("ideal", "calibrated"):
            cim = to_cim(net, tech="sram8t", rows=32, cols=32, mode="surrogate", table=tab, adc_bits=3,
                         adc_reference=ref_kind, binsparx=True, max_active_rows=8)
            y = cim(x)
            assert torch.isfinite(y).all() and y.shape == (2, 10)
            assert cim.cim_array.max_code == 7
        cim = to_cim(net, tech="sram8t", rows=32, cols=32, mode="surrogate", table=tab, adc_bits=3, adc_lsb_counts=4)
        assert torch.isfinite(cim(x)).all() and cim.cim_array.max_code == 28


def test_bad_tables():
    net = _tiny_net()
    tab = synthetic_table("sram8t", 32, 32, samples=800)
    with pytest.raises(TableError, match="rows"):
        to_cim(net, tech="sram8t", rows=64, cols=32, mode="surrogate", table=tab)
    with pytest.raises(TableError, match="reram1t1r"):
        to_cim(net, tech="reram1t1r", rows=32, cols=32, mode="surrogate", table=tab)
    with pytest.raises(InputError):
        to_cim(net, tech="sram8t", rows=32, cols=32, mode="bogus", table=tab)


@pytest.mark.ngspice
def test_spice_spot_checks(tmp_path):
    from cosim.cim.spot import run_spot_checks, summarize
    net = _tiny_net(4)
    tab = synthetic_table("resistor", 8, 8, samples=600, i_cell_a=0.2 / 20e3, ir_drop=0.0)
    with torch.no_grad():
        cim = to_cim(net, tech="resistor", rows=8, cols=8, mode="spice", table=tab, spice_tiles=2, spice_vectors=3)
        cim(torch.randn(2, 3, 8, 8))
    checks = run_spot_checks(cim, cim.cim_array.surrogate)
    assert len(checks) == 2
    for c in checks:
        assert c["vectors"] == 3 and 0 <= c["code_agreement_surrogate_vs_spice"] <= 1
        assert c["ngspice_version"]
    assert summarize(checks)["tiles"] == 2


# ----------------------------------------------------------------------------- the two real networks
@pytest.mark.shared
@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_real_networks_bit_identical(name):
    from cosim.bnn.models import load_reference
    from cosim.bnn.datasets import load_cifar10, to_tensor
    images, _ = load_cifar10(split="test")
    x = to_tensor(images[:2])
    net = load_reference(name)
    with torch.no_grad():
        ref = net(x)
        for rows, cols, bs in ((64, 64, False), (100, 48, True)):
            cim = convert(net, IdealArray(rows), cols, binsparx=bs)
            assert torch.equal(cim(x), ref), (rows, cols, bs)
    s = cim_stats(cim)["overall"]
    assert 0 < s["partial_sum_reduction"] < 1 and s["max_on_count"] <= 50


def test_cosim_error_is_base():
    assert issubclass(TableError, CosimError)


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_real_networks_surrogate_end_to_end(name):
    """Both networks through the surrogate (ideal-law table: must equal the software logits)."""
    from cosim.bnn.models import load_reference
    from cosim.bnn.datasets import load_cifar10, to_tensor
    images, _ = load_cifar10(split="test")
    x = to_tensor(images[:1])
    net = load_reference(name)
    tab = synthetic_table("sram8t", 64, 64, samples=3000, ir_drop=0.0)
    with torch.no_grad():
        ref = net(x)
        cim = to_cim(net, tech="sram8t", rows=64, cols=64, mode="surrogate", table=tab, binsparx=True)
        assert torch.equal(cim(x), ref)


def test_coupled_table_reads_whole_arrays():
    """A coupled-topology table is read one whole C-column array at a time (unused columns off)."""
    net = _tiny_net(5)
    tab = synthetic_table("resistor", 16, 8, samples=1500, ir_drop=0.0, topology="coupled")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = net(x)
        cim = to_cim(net, tech="resistor", rows=16, cols=8, mode="surrogate", table=tab, topology="coupled",
                     binsparx=True)
        assert cim.cim_array.cols == 8
        assert torch.equal(cim(x), ref)
    with pytest.raises(TableError):
        to_cim(net, tech="resistor", rows=16, cols=16, mode="surrogate", table=tab)      # 8 columns calibrated
    with pytest.raises(TableError):
        to_cim(net, tech="resistor", rows=16, cols=8, mode="surrogate", table=tab, topology="decoupled")


def _shipped(tech, rows):
    from cosim.errors import TableError
    from cosim.surrogate.tables import default_table_path
    try:
        default_table_path(tech, rows)
        return True
    except TableError:
        return False


@pytest.mark.skipif(not _shipped("sram8t", 64), reason="no shipped sram8t 64-row table")
def test_shipped_table_end_to_end():
    """The default (shipped, SPICE-calibrated) table through a small network, with its energy."""
    net = _tiny_net(6)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        cim = to_cim(net, tech="sram8t", rows=64, cols=64, mode="surrogate", binsparx=True,
                     adc_reference="calibrated")
        y = cim(x)
    assert torch.isfinite(y).all()
    s = cim_stats(cim)["overall"]
    assert s["array_energy_j"] > 0 and 0 < s["on_cell_fraction"] < 0.5
    prov = cim.cim_info["array"]["table_provenance"]
    # made by ngspice, or by the exact solver with an ngspice cross-check (scripts/make_tables.py)
    assert prov["ngspice_version"] or prov["ngspice_check"]["ngspice_version"]


@pytest.mark.parametrize("mode", ["ideal", "surrogate"])
def test_worker_processes_classify_as_one(mode):
    """Images classified by two worker processes: the same count of correct images and the same
    statistics as in this process (energy within float rounding)."""
    import numpy as np

    from cosim.cim.parallel import classify
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), BinConv2d(8, 12, 3, 2, 1),
                        nn.BatchNorm2d(12), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48, 10)).eval()
    g = np.random.default_rng(0)
    images = g.integers(0, 256, size=(45, 32, 32, 3), dtype=np.uint8)
    labels = g.integers(0, 10, size=45)
    kw = dict(tech="sram8t", rows=32, cols=8, mode=mode, binsparx=True, max_stride=1,     # every vector's count
              table=synthetic_table("sram8t", 32, 32, samples=1500, ir_drop=0.05))
    one, two = to_cim(net, **kw), to_cim(net, **kw)
    c1 = classify(one, images, labels, batch_size=10)
    c2 = classify(two, images, labels, batch_size=10, workers=2, rebuild=(net, kw))
    assert c1 == c2
    s1, s2 = cim_stats(one)["overall"], cim_stats(two)["overall"]
    e1, e2 = s1.pop("array_energy_j"), s2.pop("array_energy_j")
    assert s1 == s2 and s1["max_on_count"] > 0 and e2 == pytest.approx(e1, rel=1e-9)
    with pytest.raises(InputError):
        classify(two, images, labels, batch_size=10, workers=2)      # no way to build the workers' copies


def test_worker_processes_end_with_a_killed_caller(tmp_path):
    """kill -9 of a process classifying through a WorkerPool: its workers (children of multiprocessing's
    fork server, which outlives the caller) end within seconds."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    psutil = pytest.importorskip("psutil")
    script = tmp_path / "pool.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "import numpy as np, torch\n"
        "from torch import nn\n"
        "from cosim.bnn.layers import BinConv2d\n"
        "from cosim.cim import to_cim\n"
        "from cosim.cim.parallel import WorkerPool\n"
        "if __name__ == '__main__':\n"
        "    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), BinConv2d(8, 8, 3, 1, 1), nn.Flatten(),\n"
        "                        nn.Linear(8 * 32 * 32, 10)).eval()\n"
        "    kw = dict(tech='sram8t', rows=16, cols=8, mode='ideal')\n"
        "    images = np.zeros((400, 32, 32, 3), np.uint8)\n"
        "    with WorkerPool(net, kw, 2) as pool:\n"
        "        while True:\n"
        "            pool.classify(to_cim(net, **kw), images, np.zeros(400, int), 50)\n")
    main_proc = subprocess.Popen([sys.executable, str(script)])
    try:
        t0 = time.monotonic()
        helpers = []
        while len(helpers) < 3 and time.monotonic() - t0 < 60:    # fork server and two workers at least
            time.sleep(0.2)
            helpers = psutil.Process(main_proc.pid).children(recursive=True)
        assert len(helpers) >= 3
        time.sleep(1.0)
        helpers = psutil.Process(main_proc.pid).children(recursive=True)
        os.kill(main_proc.pid, signal.SIGKILL)
        main_proc.wait(10)
        gone, alive = psutil.wait_procs(helpers, timeout=15)
        assert not alive, [p.cmdline()[:3] for p in alive]
    finally:
        if main_proc.poll() is None:
            main_proc.kill()
