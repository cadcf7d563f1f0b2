"""CiMConfig (cosim.cim.config): the configuration to_cim, WorkerPool and ``cosim infer`` share."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cosim.circuit.netlist import MAX_SIZE
from cosim.circuit.technology import REGISTRY, get_technology
from cosim.cim import CiMConfig, IdealArray, cim_stats, convert, to_cim
from cosim.cim.config import GROUPS, KEYWORDS, MODES, table_sha256
from cosim.cim.synthetic import synthetic_table
from cosim.errors import InputError
from test_cim_network import _tiny_net


@st.composite
def configs(draw):
    mode = draw(st.sampled_from(MODES))
    return CiMConfig.from_kwargs(
        tech=draw(st.sampled_from(sorted(REGISTRY))), rows=draw(st.integers(1, MAX_SIZE)),
        cols=draw(st.integers(1, MAX_SIZE)), topology=draw(st.sampled_from([None, "decoupled", "coupled"])),
        mode=mode, table=draw(st.none() | st.text(min_size=1, max_size=30)),
        certify=(certify := draw(st.booleans()) if mode == "surrogate" else False),
        certify_table=draw(st.none() | st.text(min_size=1, max_size=30)) if certify else None,
        adc_bits=draw(st.none() | st.integers(1, 16)), adc_reference=draw(st.sampled_from(["ideal", "calibrated"])),
        adc_lsb_counts=draw(st.integers(1, 1000)), binsparx=draw(st.booleans()),
        max_active_rows=draw(st.none() | st.integers(1, 10_000)), max_stride=draw(st.integers(1, 64)),
        device=draw(st.sampled_from(["cpu", "cuda", "cuda:1"])), chunk_bytes=draw(st.integers(1, 2**40)),
        seed=draw(st.integers(0, 2**32)), spice_tiles=draw(st.integers(1, 100)),
        spice_vectors=draw(st.integers(1, 100)))


@settings(max_examples=200, deadline=None)
@given(configs())
def test_dict_round_trip(cfg):
    d = cfg.as_dict()
    text = json.dumps(d, allow_nan=False)                    # JSON-safe
    back = CiMConfig.from_dict(json.loads(text))
    assert back == cfg and back.as_dict() == d and back.digest() == cfg.digest()
    assert CiMConfig.from_kwargs(**cfg.kwargs()) == cfg      # to_cim's keywords name every field
    assert set(d) == set(GROUPS)


def test_technology_and_table_objects_in_the_dict(tmp_path):
    tech = get_technology("sram8t", r_wire_ohm=5.0)
    cfg = CiMConfig.from_kwargs(tech=tech, rows=16, cols=16)
    d = json.loads(json.dumps(cfg.as_dict()))
    assert d["array"]["tech"]["r_wire_ohm"] == 5.0 and CiMConfig.from_dict(d) == cfg

    tab = synthetic_table("sram8t", 16, 16, samples=400, ir_drop=0.0)
    mem = CiMConfig.from_kwargs(rows=16, cols=16, mode="surrogate", table=tab)
    assert mem.as_dict()["array"]["table"] == {"path": None, "sha256": table_sha256(tab)}
    with pytest.raises(InputError, match="made in memory"):
        CiMConfig.from_dict(mem.as_dict())
    path = tab.save(tmp_path / "t.parquet")
    from cosim.surrogate.tables import load_table
    loaded = load_table(path)
    on_disk = CiMConfig.from_kwargs(rows=16, cols=16, mode="surrogate", table=loaded)
    entry = on_disk.as_dict()["array"]["table"]
    assert entry == {"path": str(path), "sha256": table_sha256(tab)}     # the content's hash, wherever it is
    assert CiMConfig.from_dict(on_disk.as_dict()).array.table == str(path)
    # a table named by a path (str or Path) is kept as its path
    assert CiMConfig.from_kwargs(table=Path(path)).as_dict()["array"]["table"] == str(path)


def test_table_hash_follows_its_numbers():
    from cosim.surrogate.tables import LookupTable
    a = synthetic_table("sram8t", 16, 16, samples=400, ir_drop=0.0)
    b = LookupTable({k: np.array(v, copy=True) for k, v in a.arrays.items()}, dict(a.meta), dict(a.provenance))
    assert table_sha256(a) == table_sha256(b)
    name = sorted(b.arrays)[0]
    b.arrays[name] = np.asarray(b.arrays[name], dtype=float) + 1e-12
    assert table_sha256(a) != table_sha256(b)
    ca, cb = (CiMConfig.from_kwargs(rows=16, cols=16, mode="surrogate", table=t) for t in (a, b))
    assert ca.digest() != cb.digest()


#: another valid value of every field (config at its defaults otherwise)
OTHER = {"tech": "reram1t1r", "rows": 32, "cols": 16, "topology": "coupled", "mode": "surrogate", "table": "t.parquet",
         "certify": True, "certify_table": "c.parquet", "adc_bits": 5, "adc_reference": "calibrated", "adc_lsb_counts": 2, "binsparx": True,
         "max_active_rows": 8, "max_stride": 1, "device": "cuda", "chunk_bytes": 1 << 20, "seed": 3,
         "spice_tiles": 2, "spice_vectors": 3}


def test_digest_is_stable_and_follows_every_field():
    assert set(OTHER) == set(KEYWORDS)
    base = CiMConfig()
    # the same config, however it was spelt, has the same digest
    same = CiMConfig.from_kwargs(rows=np.int64(64), device=torch.device("cpu"), table=None, binsparx=np.bool_(False))
    assert same == base and same.digest() == base.digest()
    assert len(base.digest()) == 64 and base.digest() == CiMConfig.from_dict(base.as_dict()).digest()
    # the same in a fresh interpreter (no dependence on hash seeds or object identity)
    code = "from cosim.cim import CiMConfig; print(CiMConfig().digest())"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                         env={"PYTHONPATH": str(root), "PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == base.digest()
    seen = {base.digest()}
    for k, v in OTHER.items():
        extra = {"certify": {"mode": "surrogate"}, "certify_table": {"mode": "surrogate", "certify": True}}.get(k, {})
        d = base.replace(**extra, **{k: v}).digest()
        assert d not in seen, k
        seen.add(d)


BAD = [
    (dict(rows=0), "rows must be an integer from 1 to 512, got 0"),
    (dict(cols=MAX_SIZE + 1), f"cols must be an integer from 1 to {MAX_SIZE}, got {MAX_SIZE + 1}"),
    (dict(rows=True), "rows must be an integer from 1 to 512, got True"),
    (dict(rows=8.0), "rows must be an integer from 1 to 512, got 8.0"),
    (dict(mode="bogus"), "unknown mode 'bogus': expected one of ideal, surrogate, spice, exact"),
    (dict(mode="exact", certify=True), "certified reads are a form of the surrogate mode, not of 'exact'"),
    (dict(tech="sram6t"), "unknown technology 'sram6t'"),
    (dict(topology="diagonal"), "unknown topology 'diagonal'"),
    (dict(table=3), "table must be a path or a LookupTable, got int"),
    (dict(mode="surrogate", certify=True, certify_table=3), "certify_table must be a path or a LookupTable, got int"),
    (dict(mode="surrogate", certify_table="t.parquet"), "certify_table is for certified reads"),
    (dict(adc_bits=0), "ADC bits must be an integer from 1 to 16, got 0"),
    (dict(adc_reference="trimmed"), "unknown ADC references 'trimmed'"),
    (dict(adc_lsb_counts=0), "ADC lsb_counts must be a positive integer, got 0"),
    (dict(binsparx="yes"), "binsparx must be true or false, got 'yes'"),
    (dict(max_active_rows=0), "max_active_rows must be >= 1, got 0"),
    (dict(max_stride=0), "max_stride must be an integer >= 1, got 0"),
    (dict(device="gpu0"), "unknown device 'gpu0'"),
    (dict(chunk_bytes=0), "chunk_bytes must be an integer >= 1, got 0"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(spice_tiles=0), "spice_tiles must be an integer >= 1, got 0"),
    (dict(spice_vectors=0), "spice_vectors must be an integer >= 1, got 0"),
    (dict(adc_bitz=4), "unknown CiM configuration field(s): adc_bitz"),
]


@pytest.mark.parametrize("kw,message", BAD, ids=[next(iter(k)) + str(i) for i, (k, _) in enumerate(BAD)])
def test_bad_values_give_one_line_errors(kw, message):
    for make in (lambda: CiMConfig.from_kwargs(**kw), lambda: to_cim(nn.Sequential(), **kw)):
        with pytest.raises(InputError) as e:
            make()
        assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_from_dict_refuses_unknown_fields_and_bad_shapes():
    d = CiMConfig().as_dict()
    d["adc"]["gain"] = 2
    with pytest.raises(InputError, match=r"adc\.gain"):
        CiMConfig.from_dict(d)
    with pytest.raises(InputError, match="unknown CiM configuration field"):
        CiMConfig.from_dict({"arrays": {}})
    with pytest.raises(InputError, match="must be a dict"):
        CiMConfig.from_dict([1])
    with pytest.raises(InputError, match="rows must be an integer"):
        CiMConfig.from_dict({"array": {"rows": -4}})
    assert CiMConfig.from_dict({"mapping": {"binsparx": True}}) == CiMConfig.from_kwargs(binsparx=True)
    with pytest.raises(InputError, match="must be a CiMConfig"):
        to_cim(nn.Sequential(), {"rows": 8})
    with pytest.raises(InputError, match="must be a ArrayConfig"):
        CiMConfig(array={"rows": 8})


def test_every_field_is_documented():
    for k in KEYWORDS:
        doc = CiMConfig.doc(k)
        assert len(doc) > 15, k
    assert "bits" in CiMConfig.doc("adc.bits") and "(bytes)" in CiMConfig.doc("chunk_bytes")
    with pytest.raises(InputError):
        CiMConfig.doc("adc.gain")


@pytest.mark.parametrize("mode", ["ideal", "surrogate"])
def test_config_and_keywords_give_the_same_network(mode):
    """to_cim(model, config) and to_cim(model, **keywords) give bit-identical outputs and statistics, and the
    converted model carries its config."""
    net = _tiny_net(2)
    tab = synthetic_table("sram8t", 32, 32, samples=1500, ir_drop=0.08)
    kw = dict(tech="sram8t", rows=32, cols=16, mode=mode, table=tab, binsparx=True, adc_bits=4,
              adc_reference="calibrated", max_active_rows=16, max_stride=1)
    config = CiMConfig.from_kwargs(**kw)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        a, b = to_cim(net, **kw), to_cim(net, config)
        c = to_cim(net, config.replace(binsparx=False), binsparx=True)     # keywords override the config
        ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb) and torch.equal(ya, yc)
    sa, sb = cim_stats(a), cim_stats(b)
    assert sa == sb and sa["overall"]["vectors"] > 0
    assert b.cim_config is config and a.cim_config == config == c.cim_config
    assert a.cim_config.digest() == config.digest()
    assert b.cim_info["tech"] == "sram8t" and b.cim_info["rows"] == 32 and b.cim_info["bits"] == 1
    if mode == "surrogate":         # the keywords reach the array model
        assert b.cim_array.surrogate.adc.bits == 4 and b.cim_array.max_code == 15
    # the low-level form has no CiMConfig: an array model of the caller's
    low = convert(net, IdealArray(32), 16)
    assert low.cim_config is None and low.cim_info["cols"] == 16


def test_worker_pool_takes_a_config():
    """WorkerPool rebuilds its copies from a CiMConfig as from keywords; a GPU config is refused."""
    from cosim.cim.parallel import WorkerPool
    net = _tiny_net(3)
    with pytest.raises(InputError, match="CPU only"):
        WorkerPool(net, CiMConfig.from_kwargs(device="cuda"), 2)
    with pytest.raises(InputError, match="CPU only"):
        WorkerPool(net, {"device": "cuda"}, 2)


@pytest.mark.shared
def test_infer_json_carries_config_and_digest(capsys):
    from test_cli_infer import _run
    code, io = _run(["infer", "--model", "vgg-small", "--mode", "ideal", "--rows", "32", "--cols", "16", "--binsparx",
                     "--adc-bits", "5", "--adc-lsb", "2", "--max-active-rows", "16", "--seed", "4", "--limit", "1",
                     "--threads", "1", "--json", "--no-progress"], capsys)
    assert code == 0, io.err
    res = json.loads(io.out)
    expected = CiMConfig.from_kwargs(rows=32, cols=16, mode="ideal", binsparx=True, adc_bits=5, adc_lsb_counts=2,
                                     max_active_rows=16, seed=4)
    assert res["cim_config"] == expected.as_dict()
    assert res["cim_config_sha256"] == expected.digest() == res["provenance"]["cim_config_sha256"]
    assert CiMConfig.from_dict(res["cim_config"]) == expected
    # the keys the result had before the config stay, with the same values
    assert (res["rows"], res["cols"], res["binsparx"], res["adc_bits"], res["max_active_rows"]) == (32, 16, True, 5, 16)
    assert res["tech"] == "sram8t" and res["provenance"]["seed"] == 4 and res["n"] == 1


def test_infer_options_make_one_config():
    from cosim.commands.infer import cim_config
    cfg = cim_config(tech="reram1t1r", rows=16, cols=8, table=None, topology="coupled", mode="surrogate",
                     certify=True, binsparx=True, adc_bits=3, adc_reference="calibrated", adc_lsb=2,
                     max_active_rows=4, device="cpu", spice_tiles=2, spice_vectors=5, seed=7)
    assert dataclasses.asdict(cfg.adc) == {"bits": 3, "reference": "calibrated", "lsb_counts": 2}
    assert (cfg.array.tech, cfg.array.topology, cfg.array.certify, cfg.mapping.max_active_rows) == \
        ("reram1t1r", "coupled", True, 4)
    assert (cfg.run.spice_tiles, cfg.run.spice_vectors, cfg.run.seed) == (2, 5, 7)


def test_configs_with_equal_tables_are_equal_and_hashable():
    from cosim.surrogate.tables import LookupTable
    a = synthetic_table("sram8t", 16, 16, samples=400, ir_drop=0.0)
    b = LookupTable({k: np.array(v, copy=True) for k, v in a.arrays.items()}, dict(a.meta), dict(a.provenance))
    ca, cb = (CiMConfig.from_kwargs(rows=16, cols=16, mode="surrogate", table=t) for t in (a, b))
    assert ca == cb and hash(ca) == hash(cb) and len({ca, cb, CiMConfig()}) == 2
    assert ca != ca.replace(table="elsewhere.parquet") and ca != ca.replace(adc_bits=3)


def test_study_cell_records_the_digest_of_its_config(tmp_path):
    """A study cell's provenance holds the digest of the CiMConfig its network was converted with."""
    from types import SimpleNamespace

    from cosim.bnn.layers import BinConv2d
    from cosim.study.config import Cell
    from cosim.study.runner import compute_cell

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), BinConv2d(8, 8, 3, 2, 1),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval()
    images = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    tab = synthetic_table("sram8t", 32, 32, samples=800, ir_drop=0.05)
    ctx = SimpleNamespace(model=lambda name: (net, "w"), data=lambda: (images, np.zeros(3, int), "d", "mem"),
                          table_for=lambda cell: (tab, "mem.parquet", "t"), indices=lambda labels: np.arange(len(labels)),
                          config=SimpleNamespace(device="cpu", batch_size=2), cache_root=tmp_path)
    cell = Cell(network="tiny", variant="pwa+binsparx", technology="sram8t", rows=32, cols=16, r_wire_ohm=10.0,
                adc_bits=5, pwa_rows=8, limit=3, seed=2)
    out = compute_cell(cell, ctx)
    expected = CiMConfig.from_kwargs(tech="sram8t", rows=32, cols=16, mode="surrogate", table=tab, binsparx=True,
                                     adc_bits=5, max_active_rows=8, seed=2)
    assert out["provenance"]["cim_config_sha256"] == expected.digest() and out["n"] == 3
