"""SPICE spot checks of the surrogate inside a real layer (the ``spice`` mode).

The network itself runs on the surrogate (SPICE on every tile of a network would take days); a few
tiles of real layers are picked at random (seeded; spread over the layers), the input vectors that reach them in the first
batch are recorded (``vectors`` of them, spread evenly over the batch), and after the run each tile is
simulated in ngspice (cosim.circuit.spice.run_array, the table's technology and topology, the full R x C
array with unused rows and columns off) and digitised with the surrogate's own ADC. The report
compares, per tile: SPICE codes against the surrogate's codes and against the ideal AND-counts, and
the surrogate's currents against SPICE's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError


def select_spot_tiles(model: nn.Module, n_tiles: int, vectors: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """Mark ``n_tiles`` distinct (layer, row tile, column tile) crossbars of a converted model."""
    from .convert import cim_layers

    if n_tiles < 1 or vectors < 1:
        raise InputError(f"spot checks need at least one tile and one vector, got {n_tiles} and {vectors}")
    layers = cim_layers(model)
    rng = np.random.default_rng(seed)
    # spread over the layers (a random layer order, round robin), a random tile within each
    order = rng.permutation(len(layers)).tolist()
    chosen: set[tuple[int, int, int]] = set()
    total = sum(m.matrix.tiles.n_arrays for _, m in layers)
    i = 0
    while len(chosen) < min(n_tiles, total):
        li = order[i % len(order)]
        i += 1
        tiles = layers[li][1].matrix.tiles
        free = [(t, j) for t in range(tiles.row_tiles) for j in range(tiles.col_tiles) if (li, t, j) not in chosen]
        if free:
            t, j = free[int(rng.integers(len(free)))]
            chosen.add((li, t, j))
    out = []
    for li, t, j in sorted(chosen):
        name, m = layers[li]
        m.matrix.spot_tiles.add((t, j))
        m.matrix.spot_vectors = int(vectors)
        out.append({"layer": name, "row_tile": t, "col_tile": j})
    return out


def run_spot_checks(model: nn.Module, surrogate, backend: str = "subprocess") -> list[dict[str, Any]]:
    """Simulate the recorded tiles in ngspice and compare with the surrogate (see module docstring)."""
    from ..circuit.netlist import ArraySpec
    from ..circuit.spice import run_array
    from .convert import cim_layers

    spec = ArraySpec(surrogate.tech, surrogate.rows, surrogate.cols, surrogate.topology)
    results = []
    for name, m in cim_layers(model):
        for (t, j), (x, w) in sorted(m.matrix.spot_records.items()):
            xn = x.numpy().astype(np.int8)
            wn = w.numpy().astype(np.int8)
            if wn.shape[1] < spec.cols:        # a narrower last column tile: the rest of the array is off
                wn = np.pad(wn, ((0, 0), (0, spec.cols - wn.shape[1])))
            t0 = time.perf_counter()
            res = run_array(spec, xn, wn, backend=backend)
            spice_s = time.perf_counter() - t0
            i_spice = torch.as_tensor(res.column_current_a, dtype=torch.float32)
            wt = torch.as_tensor(wn, dtype=torch.float32)
            xt = torch.as_tensor(xn, dtype=torch.float32)
            i_sur = surrogate.column_currents(xt, wt).float()
            c_spice = surrogate.adc.digitize(i_spice)
            c_sur = surrogate.adc.digitize(i_sur)
            ideal = xt @ wt
            real = int(w.shape[1])                # columns holding weights of the layer
            sl = slice(0, real)
            d = (c_sur - c_spice)[:, sl]
            rel = ((i_sur - i_spice)[:, sl].pow(2).sum() / i_spice[:, sl].pow(2).sum().clamp(min=1e-30)).sqrt()
            results.append({
                "layer": name, "row_tile": t, "col_tile": j, "vectors": int(xn.shape[0]), "columns": real,
                "mean_on_count": float(ideal[:, sl].mean()),
                "code_agreement_surrogate_vs_spice": float((d == 0).float().mean()),
                "mean_abs_code_error_surrogate_vs_spice": float(d.abs().mean()),
                "code_agreement_ideal_vs_spice": float(((ideal - c_spice)[:, sl] == 0).float().mean()),
                "mean_abs_code_error_ideal_vs_spice": float((ideal - c_spice)[:, sl].abs().mean()),
                "current_rel_rmse_surrogate_vs_spice": float(rel),
                "ngspice_version": res.ngspice_version, "solver": res.solver,
                "device_models": res.device_models, "device_models_fallback": res.device_models_fallback,
                "netlist_sha256": res.netlist_sha256, "spice_seconds": round(spice_s, 3),
            })
    return results


def summarize(checks: list[dict[str, Any]]) -> dict[str, Any]:
    if not checks:
        return {"tiles": 0}
    n = np.array([c["vectors"] * c["columns"] for c in checks], dtype=np.float64)

    def wavg(key: str) -> float:
        return float((np.array([c[key] for c in checks]) * n).sum() / n.sum())

    return {"tiles": len(checks), "column_reads": int(n.sum()),
            "code_agreement_surrogate_vs_spice": wavg("code_agreement_surrogate_vs_spice"),
            "mean_abs_code_error_surrogate_vs_spice": wavg("mean_abs_code_error_surrogate_vs_spice"),
            "code_agreement_ideal_vs_spice": wavg("code_agreement_ideal_vs_spice"),
            "mean_abs_code_error_ideal_vs_spice": wavg("mean_abs_code_error_ideal_vs_spice")}
