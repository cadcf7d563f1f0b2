"""Array models: what one R x C crossbar reads for a batch of binary input vectors.

Every model has the same interface (:class:`ArrayModel`):

    codes = array.read(x_bits, w_bits)     # x_bits (N, R) in {0,1}, w_bits (R, C) in {0,1} -> (N, C)

``codes`` are the ADC codes of the columns: the estimated AND-count of each column (a float tensor of
integers). :class:`IdealArray` returns ``x_bits @ w_bits`` exactly; :class:`SurrogateArray` wraps the
SPICE-calibrated surrogate (cosim.surrogate.evaluate, imported only when used); :class:`ExactArray` solves every
column exactly (cosim.circuit.solver) and digitises the currents with the same ADC as the surrogate mode;
:class:`SpiceArray` runs ngspice on a handful of tiles and digitises the currents with the surrogate's ADC.

A model may also offer ``read_with_current(x_bits, w_bits) -> (codes, sum of column currents in A)``
(a float, or a 0-d tensor on a GPU so that reads do not synchronise) for the array energy (sum I * v_read_v * t_read_s); an exact model offers
``ideal_current_sum_a(on_cells, leak_cells)``. ``array.exact`` says whether the codes are the exact
AND-counts; ``array.max_code`` bounds the codes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import InputError


@runtime_checkable
class ArrayModel(Protocol):
    rows: int
    #: columns of one array, or None where columns are independent and any number can be read at once
    cols: int | None
    exact: bool

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor: ...


def check_operands(x_bits: torch.Tensor, w_bits: torch.Tensor, rows: int) -> None:
    if x_bits.dim() != 2 or w_bits.dim() != 2:
        raise InputError(f"read() needs x_bits (N, R) and w_bits (R, C), got {tuple(x_bits.shape)} and {tuple(w_bits.shape)}")
    if x_bits.shape[1] != rows or w_bits.shape[0] != rows:
        raise InputError(f"array has {rows} rows, got x_bits {tuple(x_bits.shape)} and w_bits {tuple(w_bits.shape)}")


class IdealArray:
    """No non-ideality: the column reads its exact AND-count, ``x_bits @ w_bits``.

    ``i_cell_a``: current of one conducting cell (A) for the ideal array energy (None: no energy).
    Products are computed in the operands' dtype: float16 bit tensors give exact counts up to 2048
    rows (see cosim.cim.mapping.bits_dtype).
    """

    exact = True
    #: reads are the plain products x_bits @ w_bits: a caller may compute the reads of several row tiles
    #: as one product where their sum is all it needs (cosim.cim.layers.CrossbarMatrix does)
    linear = True
    table_provenance: dict[str, Any]    # set by build_array when a table is at hand

    def __init__(self, rows: int, cols: int | None = None, i_cell_a: float | None = None) -> None:
        if rows < 1 or (cols is not None and cols < 1):
            raise InputError(f"array size must be positive, got {rows}x{cols}")
        self.rows, self.cols, self.i_cell_a = int(rows), cols, i_cell_a
        self.i_off_a: float | None = None
        self.max_code = int(rows)

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor:
        check_operands(x_bits, w_bits, self.rows)
        return x_bits @ w_bits

    def ideal_current_sum_a(self, on_cells: float, leak_cells: float) -> float | None:
        """Sum of ideal column currents: ON cells x i_cell_a + (input 1, weight 0) cells x i_off_a."""
        if self.i_cell_a is None:
            return None
        return on_cells * self.i_cell_a + leak_cells * (self.i_off_a or 0.0)

    def describe(self) -> dict:
        out = {"model": "ideal", "rows": self.rows, "cols": self.cols, "i_cell_a": self.i_cell_a, "i_off_a": self.i_off_a}
        if getattr(self, "table_provenance", None):
            out["table_provenance"] = self.table_provenance
        return out


class SurrogateArray:
    """The SPICE-calibrated surrogate (cosim.surrogate.evaluate.Surrogate) as an array model.

    Reads return the ADC codes of the surrogate's column currents; the currents' sum is kept for the
    array energy. Columns of a decoupled table are independent, so any number is read at once
    (``cols`` None); a coupled table reads whole arrays of its calibrated width.

    The weight-side operands of every tile (``Surrogate.prepare``) are built on its first read and kept
    (least recently used first out beyond ``max_prepared_bytes``): a network reads the same tiles for
    every batch. A cached tile is recognised by its storage, shape, strides and torch's version counter
    (an in-place change of the weights is a new tile; inference-mode tensors, which have no counter, are
    not cached), and the cache holds a reference to the weights so that their memory cannot be reused
    by another tensor while they are cached.
    """

    exact = False

    def __init__(self, surrogate, max_prepared_bytes: int = 1 << 30) -> None:
        self.surrogate = surrogate
        self.rows = int(surrogate.rows)
        self.cols = None if surrogate.topology == "decoupled" else int(surrogate.cols)
        #: largest value a read returns (codes count lsb_counts AND-counts each)
        self.max_code = int(surrogate.adc.max_code) * int(surrogate.adc.lsb_counts)
        self.i_cell_a = float(surrogate.i_cell_a)
        self.i_off_a = float(getattr(surrogate, "i_off_a", 0.0))
        self.max_prepared_bytes = int(max_prepared_bytes)
        self._prepared: OrderedDict = OrderedDict()
        self._prepared_bytes = 0

    def prepared(self, w_bits: torch.Tensor):
        """The surrogate's operands for ``w_bits`` (R, C), from the cache or built and cached. Tensors
        created under ``torch.inference_mode`` have no version counter, so they are prepared each time."""
        if w_bits.is_inference():
            return self.surrogate.prepare(w_bits)
        key = (w_bits.data_ptr(), tuple(w_bits.shape), tuple(w_bits.stride()), w_bits.dtype, str(w_bits.device),
               w_bits._version)
        hit = self._prepared.get(key)
        if hit is not None:
            self._prepared.move_to_end(key)
            return hit[1]
        pw = self.surrogate.prepare(w_bits)
        size = pw.nbytes()
        if size <= self.max_prepared_bytes:
            self._prepared[key] = (w_bits, pw)
            self._prepared_bytes += size
            while self._prepared_bytes > self.max_prepared_bytes:
                _, (_, old) = self._prepared.popitem(last=False)
                self._prepared_bytes -= old.nbytes()
        return pw

    def clear_cache(self) -> None:
        self._prepared.clear()
        self._prepared_bytes = 0

    def read_with_current(self, x_bits: torch.Tensor, w_bits: torch.Tensor):
        """(codes, sum of the column currents in A): a float on CPU, a 0-d tensor on a GPU (no
        synchronisation per read; callers add them up and convert once)."""
        check_operands(x_bits, w_bits, self.rows)
        return self.surrogate.read_with_current(x_bits, self.prepared(w_bits))

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor:
        check_operands(x_bits, w_bits, self.rows)
        return self.surrogate.read(x_bits, self.prepared(w_bits))

    def read_accumulate(self, x_bits: torch.Tensor, w_bits: torch.Tensor, acc: torch.Tensor,
                        s_x: torch.Tensor | None = None, s_w: torch.Tensor | None = None, max_stride: int = 0):
        """``acc`` += s_x s_w codes of ``read_with_current`` (Surrogate.read_accumulate: the codes added in the
        kernel where it can); returns (sum of the column currents, the largest ON-count of every max_stride-th
        vector or None). Reads of its own (a subclass's, certified reads; or an instance's) add the codes of those."""
        check_operands(x_bits, w_bits, self.rows)
        if getattr(self.read_with_current, "__func__", None) is SurrogateArray.read_with_current:
            return self.surrogate.read_accumulate(x_bits, self.prepared(w_bits), acc, s_x, s_w, max_stride)
        from ..surrogate.evaluate import add_codes
        codes, cur = self.read_with_current(x_bits, w_bits)
        add_codes(acc, codes, s_x, s_w)
        return cur, None

    def describe(self) -> dict:
        s = self.surrogate
        prov = s.table.provenance
        return {"model": "surrogate", "rows": self.rows, "cols": s.cols, "topology": s.topology,
                "technology": s.tech.name, "adc": s.adc.describe(), "table": prov.get("source_path"),
                "table_provenance": {k: v for k, v in prov.items() if k != "technology_params"}}


class ExactArray:
    """Every column solved exactly (cosim.circuit.solver: the deck's circuit, the compiled device equations) for
    the table's technology, wire resistances and topology, digitised by the same ADC as the surrogate
    mode (``adc``: ideal or SPICE-calibrated references, bound to the table). Currents are computed in
    float64 on the CPU (the solver's C kernel) and returned on the operands' device. A column that does
    not converge is an error (cosim.errors.SolverError), never a code. ``cells``: the solver's cell model
    (cosim.circuit.solver.solve_array: "auto", the tabulated cells where they apply; "exact")."""

    exact = False
    #: vectors per solver call (the solver's limit is cosim.circuit.netlist.MAX_VECTORS)
    chunk_vectors = 4096
    table_provenance: dict[str, Any]    # set by build_array

    def __init__(self, tech, rows: int, cols: int, topology: str, adc, threads: int | None = None,
                 cells: str = "auto") -> None:
        from ..circuit.netlist import MAX_SIZE
        self.tech, self.topology, self.adc = tech, topology, adc
        self.cells = cells
        self.rows = int(rows)
        self.array_cols = int(cols)
        self.cols = None if topology == "decoupled" else int(cols)
        self.max_code = int(adc.max_code) * int(adc.lsb_counts)
        self.i_cell_a = float(adc.i_cell_a)
        self.i_off_a = 0.0
        self.threads = threads
        self._max_cols = MAX_SIZE
        self.column_solves = 0

    def column_currents(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor:
        """(N, C) column currents (A, float64) of the operands."""
        from ..circuit.netlist import ArraySpec
        from ..circuit.solver import solve_array
        check_operands(x_bits, w_bits, self.rows)
        if self.cols is not None and w_bits.shape[1] != self.cols:
            raise InputError(f"a coupled array reads whole arrays of {self.cols} columns, got {w_bits.shape[1]}")
        x = x_bits.detach().to(device="cpu", dtype=torch.uint8).numpy()
        w = w_bits.detach().to(device="cpu", dtype=torch.uint8).numpy()
        N, C = x.shape[0], w.shape[1]
        import numpy as np
        out = np.empty((N, C))
        step_c = C if self.cols is not None else self._max_cols
        for c0 in range(0, C, step_c):
            wc = w[:, c0:c0 + step_c]
            spec = ArraySpec(self.tech, self.rows, wc.shape[1], self.topology)
            for n0 in range(0, N, self.chunk_vectors):
                xc = x[n0:n0 + self.chunk_vectors]
                out[n0:n0 + xc.shape[0], c0:c0 + wc.shape[1]] = solve_array(spec, xc, wc, threads=self.threads,
                                                                            cells=self.cells).column_current_a
        self.column_solves += N * C
        return torch.from_numpy(out).to(x_bits.device)

    def read_with_current(self, x_bits: torch.Tensor, w_bits: torch.Tensor):
        cur = self.column_currents(x_bits, w_bits)
        codes = self.adc.digitize(cur).to(x_bits.dtype if x_bits.is_floating_point() else torch.float32)
        return codes, float(cur.sum())

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor:
        return self.read_with_current(x_bits, w_bits)[0]

    def describe(self) -> dict:
        out = {"model": "exact", "rows": self.rows, "cols": self.array_cols, "topology": self.topology,
               "technology": self.tech.name, "adc": self.adc.describe(), "column_solves": self.column_solves,
               "solver_cells": self.cells}
        if getattr(self, "table_provenance", None):
            out["table_provenance"] = self.table_provenance
        return out


#: certified reads' default safety factor where the table's ON-count and the two beside it hold at least
#: CERTIFY_READ_SAMPLES calibration samples: a column is re-solved where its surrogate current lies within this
#: factor times its ON-count's largest calibration residual (and its neighbours') of an ADC decision level. Not a
#: bound: network columns' errors exceed a table's largest calibration residual now and then (up to 1.4x of it on
#: the 8T-SRAM 64-row table, 2.05x on the 1T-1R 128-row one). 1.0 was measured to leave at most a few column
#: reads in a million with a code other than the exact solver's, against the target's 100, where 0.5 left 280 per
#: million on ResNet-18, 1T-1R 128 rows, calibrated references (and re-solved 75 % of the reads against 86 %;
#: at 64 rows 0.5 re-solves half of what 1.0 does: docs/VALIDATION.md, "Certified reads").
CERTIFY_READ_SAFETY = 1.0
#: calibration samples an ON-count and the two beside it need for CERTIFY_READ_SAFETY: the largest residual of
#: fewer is a lower quantile of the errors, and those counts keep the fit's factor (cosim.surrogate.fit.
#: CERTIFY_SAFETY, 2, the rule before; so do tables that do not record their samples per count). The shipped
#: 8T-SRAM 64-row table holds about 38,000 per count.
CERTIFY_READ_SAMPLES = 30_000


class CertifiedArray(SurrogateArray):
    """Certified surrogate reads: the surrogate's column currents, except that every column whose current
    lies within a margin of an ADC decision level is re-solved exactly (cosim.circuit.solver) before it is
    digitised, so its code is the exact one. The margin of a column with ON-count k is ``safety`` (default
    CERTIFY_READ_SAFETY) times the largest calibration residual recorded in its ON-count band and the two
    beside it (cosim.surrogate.fit.fit_arrays; a band is one count in tables fitted since the envelope per
    count, cosim.surrogate.fit.certify_envelope); a table without them is refused. The screen runs in the
    surrogate's C kernel beside the currents and codes (cosim.surrogate.kernel.near_fields; torch elsewhere);
    the re-solved columns of a read go to the solver in one call. A coupled table's columns share their row
    lines, so a column cannot be re-solved alone: every input vector with a column near a level is re-solved
    whole (every column of the array, whose codes and currents all become the exact ones).
    ``resolved`` / ``columns_read`` count the re-solved columns (for a coupled table every column of a
    re-solved vector).
    ``cells``: the solver's cell model (as ExactArray's). ``screen``: another Surrogate (a finer table of the
    same technology, size and topology) whose currents and residuals choose the columns to re-solve; the
    codes keep ``surrogate``'s ADC decision levels, so a table that records no residuals (one fitted before cosim
    recorded them) gets certified reads from one that does. Unchanged columns then carry the screen's current."""

    def __init__(self, surrogate, tech, max_prepared_bytes: int = 1 << 30, cells: str = "auto",
                 screen=None, safety: float | None = None) -> None:
        import numpy as np

        from ..errors import TableError
        super().__init__(surrogate, max_prepared_bytes)
        self.screen = None
        if screen is not None:
            a, b = surrogate.table, screen.table
            if (b.tech_name, b.rows, b.topology) != (a.tech_name, a.rows, a.topology) \
                    or b.technology().as_dict() != a.technology().as_dict():
                raise InputError(f"the certifying table {b.provenance.get('source_path', '(in memory)')} is for "
                                 f"another circuit ({b.tech_name}, {b.rows} rows, {b.topology}, wire "
                                 f"{b.provenance.get('r_wire_ohm')} ohm) than the table it certifies ({a.tech_name}, "
                                 f"{a.rows} rows, {a.topology}, wire {a.provenance.get('r_wire_ohm')} ohm)")
            self.screen = SurrogateArray(screen, max_prepared_bytes)
        lut = (screen or surrogate).table
        where = lut.provenance.get("source_path", "the table")
        if "certify_residual_a" not in lut.arrays or "certify_band_counts" not in lut.meta:
            raise TableError(f"{where} records no calibration residuals, which certified reads need (it was fitted "
                             "before cosim recorded them): refit it by re-running its `cosim calibrate` command "
                             "with this cosim (the same --out folder reuses the SPICE points)")
        res = np.asarray(lut["certify_residual_a"], dtype=np.float64)
        near = np.maximum(res, np.maximum(np.r_[res[1:], 0.0], np.r_[0.0, res[:-1]]))
        band = int(lut.meta["certify_band_counts"])
        from ..surrogate.fit import CERTIFY_SAFETY
        self.safety = CERTIFY_READ_SAFETY if safety is None else float(safety)
        if not (np.isfinite(self.safety) and self.safety > 0):
            raise InputError(f"the certified reads' safety factor must be a positive number, got {safety!r}")
        #: the largest calibration residual of each ON-count and the two beside it (A)
        self.residual_a = torch.as_tensor(near[np.arange(self.rows + 1) // band], dtype=torch.float64)
        #: the safety factor of each ON-count: ``safety`` where given, else CERTIFY_READ_SAFETY where the count and
        #: the two beside it hold CERTIFY_READ_SAMPLES calibration samples, and the fit's factor where they do not
        factor = np.full(self.rows + 1, self.safety)
        if safety is None:
            n_k = np.asarray(lut["count_n"], dtype=np.float64) if "count_n" in lut.arrays else np.zeros(0)
            n_k = n_k if n_k.shape == (self.rows + 1,) else np.zeros(self.rows + 1)
            n_near = n_k + np.r_[n_k[1:], 0.0] + np.r_[0.0, n_k[:-1]]
            factor = np.where(n_near >= CERTIFY_READ_SAMPLES, CERTIFY_READ_SAFETY, max(CERTIFY_SAFETY, CERTIFY_READ_SAFETY))
        self.safety_per_count = torch.as_tensor(factor, dtype=torch.float64)
        self.margin_a = self.safety_per_count * self.residual_a
        self.thresholds_a = torch.as_tensor(surrogate.adc.thresholds_a(), dtype=torch.float64)
        self._near_cache: dict = {}
        self._kernel_margin: torch.Tensor | None = None
        self.tech = tech
        self.cells = cells
        self.resolved = 0
        self.columns_read = 0

    def near_mask(self, cur: torch.Tensor, lo: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Which columns lie within their margin of a decision level: ``cur`` (N, C) surrogate currents (A),
        ``lo`` the number of decision levels below each (the code over the AND-counts per code), ``k`` the
        ON-counts. Float32 currents are compared with float32 levels and margins widened by the rounding of
        both (a few units in the last place of the largest level)."""
        pad, margin = self._near_tables(cur.device, cur.dtype)
        m = margin[k]
        return (cur - pad[lo] <= m) | (pad[lo + 1] - cur <= m)

    def _near_tables(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(the decision levels with -inf and +inf at their ends, the margin of each ON-count widened by the
        rounding of ``dtype``: 8 units in the last place of the largest level) on ``device``."""
        key = (device, dtype)
        got = self._near_cache.get(key)
        if got is None:
            thr = self.thresholds_a
            pad = torch.cat([thr.new_full((1,), -float("inf")), thr, thr.new_full((1,), float("inf"))])
            slack = 8.0 * float(torch.finfo(dtype).eps) * float(thr.abs().max()) if thr.numel() else 0.0
            got = (pad.to(device, dtype), (self.margin_a + slack).to(device, dtype).contiguous())
            self._near_cache[key] = got
        return got

    def read_with_current(self, x_bits: torch.Tensor, w_bits: torch.Tensor):
        from ..circuit.netlist import ArraySpec
        from ..circuit.solver import solve_columns
        check_operands(x_bits, w_bits, self.rows)
        src = self.screen or self          # the array whose currents choose the columns to re-solve
        pw = src.prepared(w_bits)
        adc = self.surrogate.adc
        with torch.no_grad():
            if self.screen is None and self.surrogate._kernel() is not None:
                # the C kernel: the surrogate's currents, codes (a plain read's) and the screen in one pass
                if self._kernel_margin is None:
                    self._kernel_margin = self._near_tables(torch.device("cpu"), torch.float32)[1]
                near = torch.empty((x_bits.shape[0], w_bits.shape[1]), dtype=torch.uint8)
                cur, codes, total = self.surrogate._run(x_bits, pw, currents=True, codes=True,
                                                        near_margin=self._kernel_margin, near=near)
            else:
                # the screen's (or the torch path's) currents, the codes at this table's decision levels
                cur, codes, total = src.surrogate._run(x_bits, pw, currents=True, codes=self.screen is None)
                if codes is None:
                    codes = adc.digitize(cur.to(torch.float64)).to(cur.dtype)
                lsb = float(adc.lsb_counts)
                lo = (codes if lsb == 1.0 else codes / lsb).to(torch.int64)
                k = (x_bits.to(pw.w_count.dtype) @ pw.w_count).to(torch.int64).clamp_(0, self.rows)
                near = self.near_mask(cur, lo, k)
            self.columns_read += cur.numel()
            total = float(total)
            kk, cc = near.nonzero(as_tuple=True)
            if kk.numel() and self.surrogate.topology == "coupled":
                total += self._resolve_vectors(x_bits, w_bits, torch.unique(kk.cpu()), cur, codes)
            elif kk.numel():
                kk, cc = kk.cpu(), cc.cpu()
                spec = ArraySpec(self.tech, self.rows, int(w_bits.shape[1]), "decoupled")
                x = x_bits.detach().to(device="cpu", dtype=torch.uint8).numpy()
                w = w_bits.detach().to(device="cpu", dtype=torch.uint8).numpy()
                exact = torch.from_numpy(solve_columns(spec, x, w, kk.numpy(), cc.numpy(), cells=self.cells))
                dev_kk, dev_cc = kk.to(cur.device), cc.to(cur.device)
                total += float((exact - cur[dev_kk, dev_cc].to("cpu", torch.float64)).sum())
                codes[dev_kk, dev_cc] = adc.digitize(exact).to(cur.device, codes.dtype)
                self.resolved += int(kk.numel())
        return codes.to(x_bits.device, torch.float32), total

    def _resolve_vectors(self, x_bits: torch.Tensor, w_bits: torch.Tensor, vectors: torch.Tensor,
                         cur: torch.Tensor, codes: torch.Tensor) -> float:
        """Re-solve input vectors ``vectors`` (indices into ``x_bits``) of a coupled array whole: their codes in
        ``codes`` become the exact solver's; returns what their exact currents add to the read's current sum."""
        from ..circuit.netlist import MAX_VECTORS, ArraySpec
        from ..circuit.solver import solve_array
        spec = ArraySpec(self.tech, self.rows, int(w_bits.shape[1]), "coupled")
        x = x_bits.detach()[vectors.to(x_bits.device)].to(device="cpu", dtype=torch.uint8).numpy()
        w = w_bits.detach().to(device="cpu", dtype=torch.uint8).numpy()
        exact = torch.cat([torch.from_numpy(solve_array(spec, x[n0:n0 + MAX_VECTORS], w,
                                                        cells=self.cells).column_current_a)
                           for n0 in range(0, x.shape[0], MAX_VECTORS)])
        dev_v = vectors.to(cur.device)
        codes[dev_v] = self.surrogate.adc.digitize(exact).to(cur.device, codes.dtype)
        self.resolved += int(exact.numel())
        return float((exact - cur[dev_v].to("cpu", torch.float64)).sum())

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor:
        return self.read_with_current(x_bits, w_bits)[0]

    def describe(self) -> dict:
        import numpy as np
        out = super().describe()
        out.update(model="surrogate-certified", certify_safety=self.safety,
                   certify_safety_counts={str(f): int(n) for f, n in zip(*np.unique(self.safety_per_count.numpy(),
                                                                                      return_counts=True))},
                   columns_read=self.columns_read,
                   columns_resolved=self.resolved, solver_cells=self.cells)
        if self.screen is not None:
            out["certify_table"] = {k: v for k, v in self.screen.surrogate.table.provenance.items()
                                    if k != "technology_params"}
        return out


def build_array(*, mode: str, tech: str, rows: int, cols: int, table=None, adc_bits: int | None = None,
                adc_reference: str = "ideal", adc_lsb_counts: int = 1, topology: str | None = None,
                device="cpu", certify: bool = False, solver_cells: str = "auto", certify_table=None,
                certify_safety: float | None = None, **_ignored):
    """(array model, Technology) for a mode. ``table``: a LookupTable, a path, or None for the shipped
    default table of the technology and size. Ideal mode uses the table (when one is at hand) only for
    the unit cell currents of the ideal array energy. ``certify`` (surrogate mode): certified reads
    (CertifiedArray; ``certify_table``: the table that screens the columns, default ``table``; ``certify_safety``:
    its safety factor, default CERTIFY_READ_SAFETY).
    ``solver_cells``: the exact solver's cell model in exact mode and certified reads ("auto": the tabulated
    cells where they apply; "exact": the device equations)."""
    from ..circuit.technology import get_technology

    tech_obj = get_technology(tech) if isinstance(tech, str) else tech
    if rows < 1 or cols < 1:
        raise InputError(f"array size must be positive, got {rows}x{cols}")
    lut = _load_table(table, tech_obj, rows, cols, topology, required=(mode != "ideal"))
    if mode == "ideal":
        if lut is None:
            return IdealArray(rows, None), tech_obj
        arr = IdealArray(rows, None, i_cell_a=float(lut.provenance["i_cell_a"]))
        arr.i_off_a = float(lut.provenance.get("i_off_a", 0.0))
        arr.table_provenance = {k: v for k, v in lut.provenance.items() if k != "technology_params"}
        return arr, tech_obj
    from ..surrogate.adc import ADC

    adc = ADC(bits=adc_bits, references=adc_reference, lsb_counts=adc_lsb_counts)
    if mode == "exact":
        arr = ExactArray(lut.technology(), rows, lut.cols if lut.topology == "coupled" else cols, lut.topology,
                         adc.bind(lut), cells=solver_cells)
        arr.table_provenance = {k: v for k, v in lut.provenance.items() if k != "technology_params"}
        return arr, lut.technology()
    from ..surrogate.evaluate import Surrogate

    sur = Surrogate(lut, device=device, adc=adc)
    if certify:
        screen = None
        if certify_table is not None:
            screen = Surrogate(_load_table(certify_table, tech_obj, rows, cols, topology, required=True), device=device,
                               adc=adc)
        return (CertifiedArray(sur, lut.technology(), cells=solver_cells, screen=screen, safety=certify_safety),
                lut.technology())
    return SurrogateArray(sur), lut.technology()


def _load_table(table, tech_obj, rows: int, cols: int, topology: str | None, required: bool):
    from ..errors import TableError
    from ..surrogate.registry import lookup
    from ..surrogate.tables import LookupTable, load_table

    topo = topology or tech_obj.topology
    if table is None:
        try:   # the table registry: shipped tables, then the user's folder (cosim.surrogate.registry)
            lut = lookup(tech_obj, rows, topology=topo)
        except TableError:
            if required:
                raise
            return None
        return lut.check(cols=cols)
    lut = table if isinstance(table, LookupTable) else load_table(table)
    if lut.tech_name != tech_obj.name:
        raise TableError(f"{lut.provenance.get('source_path', 'table')}: calibrated for technology "
                         f"'{lut.tech_name}', asked for '{tech_obj.name}'")
    # an explicit table carries its own technology parameters (wire resistance, ...) and topology:
    # name and size must match what was asked, the topology only where one was asked
    return lut.check(rows=rows, cols=cols, topology=topology)
