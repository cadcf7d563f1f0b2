"""Calibration: a sweep of SPICE operating points, and the fit of the surrogate's lookup table.

The sweep
---------
A *point* is one ngspice run of an R x C array with K input vectors (one ``.dc`` analysis); every
(vector, column) pair of a point is one *sample* (columns of a decoupled array are independent).
Point ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone, so the same seed gives the same
points whatever order they run in, how many workers run them, and how often the sweep was interrupted.

Weight columns (the pattern along a column) mix two families:

- ``bernoulli``: every cell 1 with a column density drawn from U(0.05, 0.95);
- ``stratified``: an exact ON-count drawn uniformly from 0..R, placed ``uniform``, ``near`` the sense end
  (the source-line end, row R-1), ``far`` from it (row 0 side), or ``clustered`` (one contiguous block).

Input vectors: one all-ones vector (the column pattern itself is ON, every other row leaks: ReRAM HRS,
FET Ioff), Bernoulli vectors with densities from U(0.05, 1), and a few contiguous blocks. So the
samples cover ON-count 0..R, placements near/far/clustered/uniform, and off-cell leakage from none to all.

Every finished point is written at once to ``DIR/points/point_NNNNN.npz`` (atomically); a rerun with
the same arguments skips finished points, so an interrupted sweep loses nothing. Points run through
``cosim.sweep.executor`` (local processes or a dask cluster) and the content-addressed SPICE point cache
(``cosim.sweep.points``), so a point already simulated anywhere with the same netlist and ngspice is not rerun.

With ``solver="exact"`` (``cosim calibrate --solver exact``) the points are solved by the exact DC solver
of the same circuits (``cosim.circuit.solver``, orders of magnitude faster) instead of ngspice, and ngspice
re-solves a random 2 % of them (``check_points``, at least one; converged to reltol 1e-9 rather than
the decks' 1e-6, ``CHECK_SPICE_OPTIONS``, as the solver's tests do): every current must agree within 1e-6
relative (absolute floor 1e-12 A, the solver's tests' tolerance), or the calibration fails without
writing a table; the largest difference is recorded in the table's provenance (``ngspice_check``).

With ``placements`` (``--placements``) every third point (index 2, 5, 8, ...) holds one of the placement
families of validation in turn (``placement_patterns``: ``far``, ``near``, ``alternate``, ``dense``); the
other points are drawn exactly as without it.

The fit
-------
The surrogate's model (``MODEL = "moments-v3"``). For each column, from matrix products of the inputs
with the weight columns times a few basis functions of the row index (one product per order, plus,
for leaky cells, one small product of the inputs alone), the *variables*

    k       ON-count                          sum_j x_j w_j
    m_e     ON-pattern moment                 sum_j x_j w_j phi_e(j)                     e in ``orders``
    L       leaking cells (leak tables)       sum_j x_j (1-w_j)                          (= sum_j x_j - k)
    nu_e    leak moment                       sum_j x_j (1-w_j) phi_e(j)                 (= sum_j x_j phi_e - m_e)

where an order is either an integer e, the Legendre polynomial phi_e(j) = P_e(2 (j+1/2)/R - 1), or
``"s<n>"``, the sine phi(j) = sin((n - 1/2) pi d_j) of the distance d_j = (R - j - 1/2)/R of row j from the
sense end (row R-1): the eigenfunctions of min(d_i, d_j), the IR-drop kernel of a line fed from one end
(the drop at a cell is the wire resistance times the current of every cell whose path it shares).

and the column current is a per-ON-count polynomial in them,

    I = sum_f coef[k, f] * t_f(m, L, nu)

over a list of *terms* t_f, each a product of at most four variables (``meta["terms"]``: lists of
indices into [m_1..m_E, L, nu_1..nu_E, 1]), i.e. the lookup table ``coef`` (R+1 counts x F terms) is
indexed by k and dotted with the terms. The default terms: 1, every monomial of degree 1 to 3 in the
Legendre m_e (a full cubic), the square of every sine m_e, and for leak tables L, L^2, L^3, nu_e, nu_e^2,
L m_e, nu_e m_e and L m_a m_b over the Legendre orders (``default_terms``; the ``compact`` set keeps
only the squares, products and cubes of the m_e and drops L m_a m_b).

Why these: to first order the IR drop of a column is a quadratic form of its ON pattern whose kernel
depends on where two cells sit along the line, min(d_i, d_j) above; a few smooth moments carry most of
that form, and the cell's nonlinear response to its drop adds the cubic terms. In the kernel's own
eigenbasis the form is a sum of squares, sum_n lambda_n m_sn^2 with lambda_n ~ 1/(n - 1/2)^2: the
squares of the first sine moments carry the part of it that a few smooth moments cannot (where one ON
count is worth only a few percent of a busy column's current, at 128 and 256 rows of 8T-SRAM). Leaking
cells (ReRAM HRS, about a tenth of an ON cell) carry current through the same wires: their count and
moments, and their products with the ON moments, enter the same way. Measured on the shipped tables
(docs/VALIDATION.md), the Legendre full cubic replaced moments-v2 (cosine moments, squares only), which agreed on 87 % of the ADC codes at 128
rows of 8T-SRAM and 83 % at 256 rows. ``coef`` is fitted by weighted least squares (relative error), each
coefficient piecewise linear in k between knots, plus a per-count offset shrunk towards zero where a
count has few samples. The table also holds the count-only baseline (mean SPICE current per ON-count,
which the calibrated ADC uses as its levels), the spread per count and samples per count.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CosimError, InputError, StorageError, TableError
from ..fileio import atomic_path, check_writable, describe_os_error
from ..circuit.technology import Technology

MODEL = "moments-v3"
PLACEMENTS = ("uniform", "near", "far", "clustered")
#: moment orders of the ON-pattern (m_e) and leak (nu_e) variables: Legendre orders, or "s<n>" for sines
DEFAULT_ORDERS = (1, 2, 3, 4)
#: term sets of ``default_terms``; ``cosim calibrate --terms``
TERM_SETS = ("full", "compact", "quartic")
#: most variables in one term (the kernel multiplies up to four)
MAX_DEGREE = 4
DEFAULT_VECTORS = 16
#: Legendre orders 1-4 and the sines s1-s8 of the IR-drop kernel
WITH_SINES = DEFAULT_ORDERS + tuple(f"s{n}" for n in range(1, 9))


@dataclass(frozen=True)
class ModelForm:
    """The surrogate's model form of a table: term set (``default_terms``), ON-count knots (None:
    ``_knots``' default, 33 at 128 rows and up) and moment orders."""
    terms: str = "full"
    n_knots: int | None = None
    orders: tuple = DEFAULT_ORDERS


#: the model form of the shipped tables per (technology, rows), at every wire resistance. The compact
#: set is as accurate at 64 rows and cheaper to evaluate; 128 and 256 rows need the full cubic; 8T-SRAM,
#: whose IR drop compresses the response most, also needs the squares of the first eight sine moments of
#: the IR-drop kernel, and at 256 rows every quartic monomial on 65 knots (docs/VALIDATION.md, "Model
#: form"). Any other (technology, rows): ``ModelForm()``, the full cubic in Legendre 1-4.
MODEL_FORMS = {("sram8t", 64): ModelForm("compact"), ("reram1t1r", 64): ModelForm("compact"),
               ("sram8t", 128): ModelForm("full", 65, WITH_SINES), ("reram1t1r", 128): ModelForm("full"),
               ("sram8t", 256): ModelForm("quartic", 65, WITH_SINES), ("reram1t1r", 256): ModelForm("full")}


def model_form(tech_name: str, rows: int, terms: str | None = None, n_knots: int | None = None,
               orders=None) -> ModelForm:
    """The model form ``cosim calibrate`` fits for ``tech_name`` at ``rows``: the shipped tables' form
    (``MODEL_FORMS``), each of ``terms``, ``n_knots``, ``orders`` that is given replacing its part."""
    base = MODEL_FORMS.get((tech_name, int(rows)), ModelForm())
    if terms is not None and terms not in TERM_SETS:
        raise InputError(f"unknown term set '{terms}': expected one of {', '.join(TERM_SETS)}")
    return ModelForm(terms=base.terms if terms is None else terms,
                     n_knots=base.n_knots if n_knots is None else int(n_knots),
                     orders=base.orders if orders is None else tuple(normalise_orders(orders)))


#: cells whose leak is below this fraction of the ON current get no leak terms
LEAK_RATIO_MIN = 1e-3
#: certified reads re-solve a column whose surrogate current lies within this factor times the table's
#: largest calibration residual (its ON-count band and the two beside it) of an ADC decision level
CERTIFY_SAFETY = 2.0
#: samples a count needs before its own offset is trusted fully (shrinkage n / (n + OFFSET_SHRINK))
OFFSET_SHRINK = 8.0
#: penalty weights of the fit (second differences across knots; ridge on pattern terms), in the
#: space where every design column is scaled to unit maximum and targets are relative currents
SMOOTH_WEIGHT = 0.1
RIDGE_WEIGHT = 1e-3
#: a fit whose design matrix (samples x knots x terms) holds more elements than this is solved chunk by
#: chunk (QR), in bounded memory; smaller ones (every shipped table) by one dense least-squares solve
FIT_DENSE_MAX_ELEMENTS = 200_000_000


# ---------------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------------
def place_ones(rng: np.random.Generator, rows: int, k: int, placement: str) -> np.ndarray:
    """A 0/1 vector of length ``rows`` with exactly ``k`` ones placed as asked (row R-1 = sense end)."""
    out = np.zeros(rows, dtype=np.uint8)
    k = int(min(max(k, 0), rows))
    if k == 0:
        return out
    if placement == "clustered":
        start = int(rng.integers(0, rows - k + 1))
        out[start:start + k] = 1
        return out
    idx = np.arange(rows, dtype=np.float64)
    if placement == "uniform":
        p = np.ones(rows)
    elif placement == "near":
        p = np.exp(-(rows - 1 - idx) / (rows * rng.uniform(0.08, 0.4)))
    elif placement == "far":
        p = np.exp(-idx / (rows * rng.uniform(0.08, 0.4)))
    else:
        raise InputError(f"unknown placement '{placement}': expected one of {', '.join(PLACEMENTS)}")
    sel = rng.choice(rows, size=k, replace=False, p=p / p.sum())
    out[sel] = 1
    return out


def design_point(seed: int, index: int, rows: int, cols: int, vectors: int = DEFAULT_VECTORS
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Inputs (K, R), weights (R, C) and the family of each column, for sweep point ``index``."""
    rng = np.random.default_rng([int(seed), int(index)])
    w = np.zeros((rows, cols), dtype=np.uint8)
    fam: list[str] = []
    for c in range(cols):
        if rng.random() < 0.5:
            p = rng.uniform(0.05, 0.95)
            w[:, c] = rng.random(rows) < p
            fam.append("bernoulli")
        else:
            placement = PLACEMENTS[int(rng.integers(0, len(PLACEMENTS)))]
            w[:, c] = place_ones(rng, rows, int(rng.integers(0, rows + 1)), placement)
            fam.append(placement)
    x = np.zeros((vectors, rows), dtype=np.uint8)
    n_block = max(1, vectors // 6)
    for v in range(vectors):
        if v == 0:
            x[v] = 1
        elif v > vectors - 1 - n_block:
            x[v] = place_ones(rng, rows, int(rng.integers(1, rows + 1)), "clustered")
        else:
            x[v] = rng.random(rows) < rng.uniform(0.05, 1.0)
    return x, w, fam


#: placement families of ``random_patterns`` (validation, and ``calibrate --placements``)
PLACEMENT_FAMILIES = ("far", "near", "alternate", "dense")
#: with placements, every third point of a sweep is a placement-family point
PLACEMENT_EVERY = 3
#: calibration solvers; with "exact", ngspice re-solves this fraction of the points (at least one) and the
#: calibration fails where any current differs by more than CHECK_RTOL * |ngspice| + CHECK_ATOL_A
SOLVERS = ("ngspice", "exact")
CHECK_FRACTION = 0.02
CHECK_RTOL = 1e-6
CHECK_ATOL_A = 1e-12
#: the cross-check's ngspice runs converge further than the decks' reltol (1e-6, which leaves ngspice's own
#: currents up to ~1e-6 from converged), as the solver's tests do: the difference measured is the solver's
CHECK_SPICE_OPTIONS = "reltol=1e-9"


def _block_lengths(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """``n`` block lengths covering 0..rows as evenly as n allows (a random offset, then shuffled)."""
    k = (np.arange(n) * (rows + 1) / max(n, 1) + rng.uniform(0, (rows + 1) / max(n, 1))).astype(np.int64)
    return rng.permutation(np.minimum(k, rows))


def placement_patterns(family: str, rng: np.random.Generator, rows: int, cols: int, vectors: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (K, R) and weights (R, C) whose conducting cells (x_j w_j = 1) sit as the family says
    (row 0 is the far end of the bit line, row R-1 the sense end):

    - ``far``: one contiguous block at the far end: weight column c holds rows 0..b_c-1, input vector v
      rows 0..a_v-1 (a_0 = R: every row driven), so the conducting cells are rows 0..min(a_v, b_c)-1; the
      b_c cover every count 0..R evenly, and driven rows past b_c leak;
    - ``near``: the same block at the sense end (rows R-b..R-1);
    - ``alternate``: every other row: column c holds the rows of one parity (drawn per column), vector v
      drives one contiguous window (random start and length; v = 0 every row), so the conducting cells
      are every other row of the window (counts 0..R/2);
    - ``dense``: every input and weight 1 with a probability drawn per vector / per column from
      U(0.95, 1), so 90-100 % of the cells conduct."""
    if family in ("far", "near"):
        b = _block_lengths(rng, rows, cols)
        a = np.concatenate([[rows], rng.integers(0, rows + 1, size=vectors - 1)])[:vectors]
        j = np.arange(rows)
        pos = j if family == "far" else rows - 1 - j         # distance in rows from the block's end
        w = (pos[:, None] < b[None, :]).astype(np.uint8)
        x = (pos[None, :] < a[:, None]).astype(np.uint8)
    elif family == "alternate":
        parity = rng.integers(0, 2, size=cols)
        w = ((np.arange(rows)[:, None] % 2) == parity[None, :]).astype(np.uint8)
        x = np.zeros((vectors, rows), dtype=np.uint8)
        for v in range(vectors):
            if v == 0:
                x[v] = 1
            else:
                n = int(rng.integers(1, rows + 1))
                start = int(rng.integers(0, rows - n + 1))
                x[v, start:start + n] = 1
    elif family == "dense":
        x, w = _density_patterns(rng, 0.95, 1.0, rows, cols, vectors)
    else:
        raise InputError(f"unknown placement family '{family}': expected one of {', '.join(PLACEMENT_FAMILIES)}")
    return x, w


def sweep_design(cfg: "SweepConfig", index: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Inputs, weights and column families of sweep point ``index``: ``design_point``, except, with
    ``cfg.placements``, points ``index % PLACEMENT_EVERY == PLACEMENT_EVERY - 1``, which hold one placement
    family each (``placement_patterns``; the families in turn), drawn from ``[seed, index, 2]``. The other
    points are exactly those of a sweep without placements."""
    if cfg.placements and index % PLACEMENT_EVERY == PLACEMENT_EVERY - 1:
        fam = PLACEMENT_FAMILIES[(index // PLACEMENT_EVERY) % len(PLACEMENT_FAMILIES)]
        x, w = placement_patterns(fam, np.random.default_rng([int(cfg.seed), int(index), 2]), cfg.rows, cfg.cols,
                                  cfg.vectors)
        return x, w, [fam] * cfg.cols
    return design_point(cfg.seed, index, cfg.rows, cfg.cols, cfg.vectors)


def _density_patterns(rng: np.random.Generator, lo: float, hi: float, rows: int, cols: int, vectors: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and weights 1 with a density drawn from U(lo, hi) per input vector and per weight column."""
    px = rng.uniform(lo, hi, size=(vectors, 1))
    pw = rng.uniform(lo, hi, size=(1, cols))
    return (rng.random((vectors, rows)) < px).astype(np.uint8), (rng.random((rows, cols)) < pw).astype(np.uint8)


def random_patterns(family: str, rng: np.random.Generator, rows: int, cols: int, vectors: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Validation patterns: ``random`` (every input and weight 1 with p = 0.5), ``skewed`` (input and
    weight densities drawn per vector and per column from 10-90 %, as binary networks have), or one of
    the ``PLACEMENT_FAMILIES`` (``placement_patterns``)."""
    if family in PLACEMENT_FAMILIES:
        return placement_patterns(family, rng, rows, cols, vectors)
    if family == "random":
        x = (rng.random((vectors, rows)) < 0.5).astype(np.uint8)
        w = (rng.random((rows, cols)) < 0.5).astype(np.uint8)
    elif family == "skewed":
        x, w = _density_patterns(rng, 0.1, 0.9, rows, cols, vectors)
    else:
        raise InputError(f"unknown pattern family '{family}': expected random, skewed, network or one of "
                         f"{', '.join(PLACEMENT_FAMILIES)}")
    return x, w


# ---------------------------------------------------------------------------------------------------
# Features (numpy; the surrogate computes the same with torch)
# ---------------------------------------------------------------------------------------------------
Order = int | str


def order_number(order: Order) -> int:
    """The n of a normalised order: e of Legendre order e, n of sine order ``"s<n>"``."""
    return int(order[1:]) if isinstance(order, str) else order


def normalise_orders(orders) -> list[Order]:
    """Moment orders as the model stores them: Legendre orders as positive integers, then sine orders as
    ``"s<n>"`` (n >= 1), each once; raises InputError on anything else."""
    out: list[Order] = []
    for o in orders:
        text = str(o).strip().lower()
        try:
            norm: Order = f"s{int(text[1:])}" if text.startswith("s") else int(text)
        except ValueError:
            raise InputError(f"moment order '{o}' is neither a Legendre order (1, 2, ...) "
                             "nor a sine order (s1, s2, ...)") from None
        if order_number(norm) < 1 or norm in out:
            raise InputError(f"moment orders must be distinct and >= 1, got {list(orders)}")
        out.append(norm)
    return [o for o in out if isinstance(o, int)] + [o for o in out if isinstance(o, str)]


def moment_basis(rows: int, orders) -> np.ndarray:
    """(R, 1 + len(orders)): column 0 is all ones, then for each order the basis function of the row index
    j: the Legendre polynomial P_e of 2 (j + 1/2) / R - 1 (in -1..1), or for ``"s<n>"`` the sine
    sin((n - 1/2) pi (R - j - 1/2) / R) of the distance from the sense end."""
    from numpy.polynomial import legendre

    j = np.arange(rows, dtype=np.float64)
    pos = 2.0 * (j + 0.5) / rows - 1.0
    dist = (rows - j - 0.5) / rows
    cols = [np.ones(rows)]
    for o in normalise_orders(orders):
        cols.append(np.sin((order_number(o) - 0.5) * np.pi * dist) if isinstance(o, str)
                    else legendre.legval(pos, [0.0] * o + [1.0]))
    return np.stack(cols, axis=1)


def variable_names(orders, leak: bool) -> list[str]:
    """Names of the model's variables, in the order the term indices refer to them."""
    orders = normalise_orders(orders)
    return [f"m{e}" for e in orders] + (["L"] + [f"nu{e}" for e in orders] if leak else [])


def default_terms(orders, leak: bool, kind: str = "full") -> list[tuple[int, ...]]:
    """The model's terms as tuples of variable indices (empty tuple: the constant), for the moment
    ``orders`` (``normalise_orders``). ``kind``: ``full`` (every monomial of degree 1-3 in the Legendre
    ON moments), ``compact`` (degree 1, all products of two, and the cubes only: 19 instead of 35 ON
    terms for four orders, cheaper to evaluate, as accurate at 64 rows: docs/VALIDATION.md) or
    ``quartic`` (``full`` and every monomial of degree 4: 70 ON terms for four orders). Every sine ON
    moment adds its square (the IR-drop quadratic form in the kernel's eigenbasis). Leak tables add L,
    L^2, L^3, nu_e, nu_e^2, L m_e and nu_e m_e over the Legendre orders, and in the full and quartic sets
    also L m_a m_b (the leak current's share of the IR drop interacting with the ON pattern's)."""
    from itertools import combinations_with_replacement

    if kind not in TERM_SETS:
        raise InputError(f"unknown term set '{kind}': expected one of {', '.join(TERM_SETS)}")
    orders = normalise_orders(orders)
    poly = [i for i, o in enumerate(orders) if isinstance(o, int)]
    sine = [i for i, o in enumerate(orders) if isinstance(o, str)]
    terms: list[tuple[int, ...]] = [()]
    if kind in ("full", "quartic"):
        for degree in range(1, 5 if kind == "quartic" else 4):
            terms += list(combinations_with_replacement(poly, degree))
    else:
        terms += [(e,) for e in poly] + list(combinations_with_replacement(poly, 2)) + [(e, e, e) for e in poly]
    terms += [(s, s) for s in sine]
    if leak:
        L = len(orders)
        nu = {e: L + 1 + e for e in poly}
        terms += [(L,), (L, L), (L, L, L)] + [(nu[e],) for e in poly] + [(nu[e], nu[e]) for e in poly]
        terms += [(L, e) for e in poly] + [(nu[e], e) for e in poly]
        if kind in ("full", "quartic"):
            terms += [(L, a, b) for a, b in combinations_with_replacement(poly, 2)]
    return terms


def term_names(terms: list[tuple[int, ...]], names: list[str]) -> list[str]:
    return ["*".join(names[i] for i in t) or "1" for t in terms]


def variables_np(on: np.ndarray, active: np.ndarray, orders, leak: bool) -> tuple[np.ndarray, np.ndarray]:
    """ON-counts (n,) and variables (n, V) of n column patterns (on, active: (n, R) 0/1), in the order of
    ``variable_names``."""
    on = np.asarray(on, dtype=np.float64)
    phi = moment_basis(on.shape[1], orders)
    m = on @ phi
    k = np.rint(m[:, 0]).astype(np.int64)
    parts = [m[:, 1:]]
    if leak:
        lk = (np.asarray(active, dtype=np.float64) - on) @ phi
        parts.append(lk)
    return k, np.concatenate(parts, axis=1)


def features_np(on: np.ndarray, active: np.ndarray, orders, leak: bool,
                terms: list[tuple[int, ...]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ON-counts (n,) and term matrix (n, F) of n column patterns, terms in the given order (default:
    ``default_terms``)."""
    k, v = variables_np(on, active, orders, leak)
    terms = default_terms(orders, leak) if terms is None else terms
    F = np.ones((len(k), len(terms)))
    for f, t in enumerate(terms):
        for i in t:
            F[:, f] *= v[:, i]
    return k, F


# ---------------------------------------------------------------------------------------------------
# Running points
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepConfig:
    tech: Technology
    rows: int
    cols: int
    topology: str
    seed: int
    vectors: int = DEFAULT_VECTORS
    backend: str = "subprocess"
    #: "ngspice" (every point a SPICE run) or "exact" (cosim.circuit.solver; a random CHECK_FRACTION of the points
    #: re-solved by ngspice as a cross-check)
    solver: str = "ngspice"
    #: every PLACEMENT_EVERY-th point a placement-family point (``sweep_design``)
    placements: bool = False

    def key(self) -> dict[str, Any]:
        key = {"technology_params": self.tech.as_dict(), "rows": self.rows, "cols": self.cols,
               "topology": self.topology, "seed": self.seed, "vectors": self.vectors}
        if self.solver != "ngspice":       # the defaults add nothing: existing sweeps resume as before
            key["solver"] = self.solver
        if self.placements:
            key["placements"] = True
        return key


def _point_path(out_dir: Path, index: int) -> Path:
    return out_dir / "points" / f"point_{index:05d}.npz"


def _write_point(out_dir: Path, index: int, cfg: SweepConfig, x, w, fam, current_a, meta: dict[str, Any]) -> Path:
    """Write sweep point ``index`` (atomically): inputs, weights, currents and what produced them."""
    path = _point_path(out_dir, index)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, inputs=x, weights=w, current_a=current_a, family=np.array(fam),
                            ngspice_version=np.array(meta["ngspice_version"]), solver=np.array(meta["solver"]),
                            netlist_sha256=np.array(meta["netlist_sha256"]), seconds=np.array(meta["seconds"]),
                            config=np.array(json.dumps(cfg.key(), sort_keys=True)))
    return path


def run_sweep(cfg: SweepConfig, points: int, out_dir: str | Path, workers: int | None = None,
              progress: bool = True, stop_after: int | None = None, scheduler: str | None = None,
              cache: Any = None, point_timeout_s: float | None = None, security: Any = None) -> list[Path]:
    """Run points 0..points-1 that are not finished yet, through ``cosim.sweep.executor`` (``workers`` local
    processes, default 1, or the dask cluster at ``scheduler`` / ``$COSIM_SCHEDULER``) and the SPICE point cache
    (``cache``: a folder or PointCache, default ``$COSIM_CACHE/spice``; False: none). Finished points are
    kept whatever happens (written here as they arrive). ``point_timeout_s`` resubmits a point that gives no
    result in time (hung or lost worker). ``stop_after`` runs at most that many new points (tests:
    interruption). Points that fail (after the convergence aids) are counted and reported at the end."""
    from ..sweep.executor import SchedulerLostError, make_executor
    from ..circuit.netlist import ArraySpec
    from ..sweep.points import SpicePoint, run_points

    out_dir = Path(out_dir)
    check_writable(out_dir, "the output folder")
    cfg_file = out_dir / "sweep.json"
    key = json.dumps(cfg.key(), sort_keys=True)
    if cfg_file.is_file():
        text = cfg_file.read_text()
        try:
            json.loads(text)
        except ValueError:
            raise InputError(f"{cfg_file} is {'empty' if not text.strip() else 'not JSON'}: not the record of a "
                             "sweep written by cosim; delete it to start a sweep in this folder, or use another "
                             "--out folder") from None
        if text != key:
            raise InputError(f"{out_dir} holds a sweep with other settings (technology, size, topology, seed or "
                             "vectors); use another --out folder")
    else:
        for name in ("table.parquet", "samples.parquet"):
            if (out_dir / name).exists():
                raise InputError(f"{out_dir / name} was not written by a sweep in this folder (no sweep.json); "
                                 "calibrate will not overwrite it: use another --out folder")
        with atomic_path(cfg_file) as tmp:
            tmp.write_text(key)
    todo = [i for i in range(points) if not _point_path(out_dir, i).is_file()]
    kept_before = points - len(todo)
    if stop_after is not None:
        todo = todo[:stop_after]
    if todo:
        spec = ArraySpec(cfg.tech, cfg.rows, cfg.cols, cfg.topology)
        designs = [sweep_design(cfg, i) for i in todo]
        if cfg.solver == "exact":
            _exact_points(cfg, spec, todo, designs, out_dir, progress)
            return [_point_path(out_dir, i) for i in range(points) if _point_path(out_dir, i).is_file()]

        def write(j: int, current_a, meta: dict[str, Any]) -> None:
            if current_a is not None:
                x, w, fam = designs[j]
                _write_point(out_dir, todo[j], cfg, x, w, fam, current_a, meta)

        try:
            with make_executor(workers=workers, scheduler=scheduler, security=security) as ex:
                desc = f"calibrate {cfg.tech.name} {cfg.rows}x{cfg.cols}" if progress else False
                rep = run_points([SpicePoint(spec, x, w) for x, w, _ in designs], executor=ex, cache=cache,
                                 backend=cfg.backend, task_timeout_s=point_timeout_s, progress=desc,
                                 on_result=write)
        except SchedulerLostError as e:
            kept = sum(_point_path(out_dir, i).is_file() for i in range(points))
            raise SchedulerLostError(f"{e}; {kept} of {points} points are kept in {out_dir}: run the same command "
                                     "again (with a running scheduler) to resume") from None
        except OSError as e:
            kept = sum(_point_path(out_dir, i).is_file() for i in range(points))
            if kept == kept_before and isinstance(e, StorageError):
                raise   # refused before any point ran
            raise StorageError(f"{describe_os_error(e)}; {kept} of {points} points are kept in {out_dir}: fix that "
                               "and run the same command again to resume") from None
        if rep.failed:
            j = min(rep.failed)
            raise CosimError(f"{rep.n_failed} of {len(todo)} points failed (finished points kept in {out_dir}; "
                             f"'cosim cache info --failed' lists them): point {todo[j]}: {rep.failed[j]}")
    return [_point_path(out_dir, i) for i in range(points) if _point_path(out_dir, i).is_file()]


def _exact_points(cfg: SweepConfig, spec, todo: list[int], designs: list, out_dir: Path, progress: bool) -> None:
    """Solve and write the sweep points ``todo`` with the exact solver (cosim.circuit.solver), one array per point.
    Each point records the deck's hash (the circuit solved is the deck's), solver "exact-banded" (or
    "exact-sparse"), no ngspice version."""
    from ..circuit.netlist import build_netlist
    from ..provenance import sha256_text
    from ..circuit.solver import solve_array
    from ..circuit.spice import uses_klu

    name = "exact-banded" if spec.topology == "decoupled" else "exact-sparse"
    t0 = time.perf_counter()
    for j, i in enumerate(todo):
        x, w, fam = designs[j]
        res = solve_array(spec, x, w)
        meta = {"ngspice_version": "", "solver": name, "seconds": res.seconds,
                "netlist_sha256": sha256_text(build_netlist(spec, x, w, klu=uses_klu(cfg.backend)))}
        try:
            _write_point(out_dir, i, cfg, x, w, fam, res.column_current_a, meta)
        except OSError as e:
            kept = j
            raise StorageError(f"{describe_os_error(e)}; {kept} new points are kept in {out_dir}: fix that and "
                               "run the same command again to resume") from None
        if progress and (j + 1) % 50 == 0:
            print(f"calibrate {cfg.tech.name} {cfg.rows}x{cfg.cols}: {j + 1}/{len(todo)} points solved, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def check_points(cfg: SweepConfig, points: int) -> list[int]:
    """The points ngspice re-solves for an exact-solver sweep: a random CHECK_FRACTION of 0..points-1
    (at least one), drawn from ``[seed, 2, points]``."""
    n = max(1, int(np.ceil(CHECK_FRACTION * points)))
    rng = np.random.default_rng([int(cfg.seed), 2, int(points)])
    return sorted(int(i) for i in rng.choice(points, size=min(n, points), replace=False))


def ngspice_check(cfg: SweepConfig, paths: list[Path], points: int, workers: int | None = None,
                  scheduler: str | None = None, cache: Any = None, point_timeout_s: float | None = None,
                  security: Any = None) -> dict[str, Any]:
    """Re-solve ``check_points`` of an exact-solver sweep with ngspice; returns the record kept in the
    table's provenance (``max_rel_diff``: the largest |exact - ngspice| / (|ngspice| + CHECK_ATOL_A /
    CHECK_RTOL), which is at most CHECK_RTOL exactly when every current is within CHECK_RTOL * |ngspice| +
    CHECK_ATOL_A). Raises CosimError when it exceeds CHECK_RTOL or ngspice fails."""
    from ..sweep.executor import make_executor
    from ..circuit.netlist import ArraySpec
    from ..sweep.points import SpicePoint, run_points

    chosen = check_points(cfg, points)
    by_index = {int(p.stem.split("_")[1]): p for p in paths}
    spec = ArraySpec(cfg.tech, cfg.rows, cfg.cols, cfg.topology)
    exact, pts = [], []
    for i in chosen:
        with np.load(by_index[i], allow_pickle=False) as z:
            x, w, cur = z["inputs"], z["weights"], z["current_a"]
        exact.append(np.asarray(cur, np.float64))
        pts.append(SpicePoint(spec, x, w, options=CHECK_SPICE_OPTIONS))
    with make_executor(workers=workers, scheduler=scheduler, security=security) as ex:
        rep = run_points(pts, executor=ex, cache=cache, backend=cfg.backend, task_timeout_s=point_timeout_s)
    if rep.failed:
        j = min(rep.failed)
        raise CosimError(f"the ngspice cross-check of the exact solver failed at point {chosen[j]}: {rep.failed[j]}")
    ref = np.concatenate([np.asarray(c, np.float64).ravel() for c in rep.currents])
    got = np.concatenate([e.ravel() for e in exact])
    diff = np.abs(got - ref)
    rel = float(np.max(diff / (np.abs(ref) + CHECK_ATOL_A / CHECK_RTOL)))
    worst = int(np.argmax(diff / (np.abs(ref) + CHECK_ATOL_A / CHECK_RTOL)))
    record = {"points": chosen, "samples": int(ref.size), "max_rel_diff": rel, "max_abs_diff_a": float(diff.max()),
              "rtol": CHECK_RTOL, "atol_a": CHECK_ATOL_A, "ngspice_options": CHECK_SPICE_OPTIONS,
              "ngspice_version": ",".join(sorted({str(m["ngspice_version"]) for m in rep.meta if m})),
              "ngspice_solver": ",".join(sorted({str(m["solver"]) for m in rep.meta if m}))}
    if rel > CHECK_RTOL:
        raise CosimError(f"the exact solver and ngspice differ by {rel:.2e} relative (more than {CHECK_RTOL:g}, "
                         f"floor {CHECK_ATOL_A:g} A) at point {chosen[worst // (cfg.vectors * cfg.cols)]}: "
                         f"{got[worst]:.9e} A vs {ref[worst]:.9e} A; the table is not written")
    return record


# ---------------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------------
def _hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def unhex(s: str, rows: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(s), dtype=np.uint8))[:rows]


def load_points(paths: list[Path]):
    """One pandas row per (point, vector, column): masks, counts, SPICE current."""
    import pandas as pd

    recs = []
    for p in paths:
        try:
            with np.load(p, allow_pickle=False) as z:
                x, w, cur, fam = z["inputs"], z["weights"], z["current_a"], z["family"]
                meta = {k: str(z[k]) for k in ("ngspice_version", "solver", "netlist_sha256")}
                secs = float(z["seconds"])
        except Exception as e:  # noqa: BLE001 - any unreadable point file is reported the same way
            raise TableError(f"calibration point {p} is unreadable ({type(e).__name__}); delete it and rerun") from None
        idx = int(p.stem.split("_")[1])
        K, R = x.shape
        C = w.shape[1]
        for v in range(K):
            for c in range(C):
                on = x[v] & w[:, c]
                act = x[v]
                recs.append({"point": idx, "vector": v, "column": c, "family": str(fam[c]),
                             "k": int(on.sum()), "n_leak": int((act & (1 - w[:, c])).sum()),
                             "on_hex": _hex(on), "active_hex": _hex(act), "current_a": float(cur[v, c]),
                             "seconds": secs / (K * C), **meta})
    return pd.DataFrame.from_records(recs)


def masks(df, rows: int) -> tuple[np.ndarray, np.ndarray]:
    on = np.stack([unhex(s, rows) for s in df["on_hex"]]) if len(df) else np.zeros((0, rows), np.uint8)
    act = np.stack([unhex(s, rows) for s in df["active_hex"]]) if len(df) else np.zeros((0, rows), np.uint8)
    return on, act


# ---------------------------------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------------------------------
def _knots(rows: int, n_knots: int | None) -> np.ndarray:
    n = n_knots or min(rows + 1, max(5, rows // 2 + 1), 33)
    return np.unique(np.rint(np.linspace(0, rows, n)))


def _hat(k: np.ndarray, knots: np.ndarray) -> np.ndarray:
    pos = np.interp(k, knots, np.arange(knots.size))
    i0 = np.clip(np.floor(pos).astype(int), 0, max(knots.size - 2, 0))
    fr = pos - i0
    B = np.zeros((k.size, knots.size))
    B[np.arange(k.size), i0] = 1 - fr
    if knots.size > 1:
        B[np.arange(k.size), i0 + 1] += fr
    return B


def fit_arrays(on: np.ndarray, active: np.ndarray, current_a: np.ndarray, rows: int, i_cell_a: float,
               orders, leak: bool, n_knots: int | None = None,
               terms: list[tuple[int, ...]] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the table arrays from samples (``leak``: with the leaking-cell variables; ``terms``: default
    ``default_terms``). Returns (arrays, meta)."""
    cur = np.asarray(current_a, dtype=np.float64)
    if cur.size < 10:
        raise TableError(f"too few calibration samples to fit a table ({cur.size})")
    orders = normalise_orders(orders)
    terms = default_terms(orders, leak) if terms is None else [tuple(int(i) for i in t) for t in terms]
    var_names = variable_names(orders, leak)
    if any(len(t) > MAX_DEGREE or any(not 0 <= i < len(var_names) for i in t) for t in terms) or () not in terms:
        raise InputError(f"model terms must be products of at most {MAX_DEGREE} variables and include the constant")
    k, F = features_np(on, active, orders, leak, terms)
    knots = _knots(rows, n_knots)
    wt = 1.0 / np.maximum(np.abs(cur), i_cell_a)
    nF = F.shape[1]
    nK = knots.size
    n_cols = nK * nF
    chunked = len(k) * n_cols > FIT_DENSE_MAX_ELEMENTS
    step = max(1, FIT_DENSE_MAX_ELEMENTS // (4 * n_cols))

    def design(lo: int, hi: int) -> np.ndarray:      # rows lo..hi of the weighted design matrix
        B = _hat(k[lo:hi].astype(np.float64), knots)
        return (B[:, :, None] * F[lo:hi, None, :]).reshape(hi - lo, -1) * wt[lo:hi, None]

    if chunked:
        colscale = np.zeros(n_cols)
        for lo in range(0, len(k), step):
            colscale = np.maximum(colscale, np.max(np.abs(design(lo, min(lo + step, len(k)))), axis=0))
    else:
        Aw = design(0, len(k))
        colscale = np.max(np.abs(Aw), axis=0)
    colscale[colscale == 0] = 1.0
    # Regularisation (in the scaled space): second differences of every coefficient across knots
    # (coefficients vary smoothly with the ON-count, and knots with few samples borrow from their
    # neighbours) and a small ridge on the pattern terms (no wild values where data are sparse).
    # Penalties act on the true coefficients theta = theta' / colscale, each feature measured in its
    # own typical scale s_f (the largest scaled column of that feature over the knots).
    s_f = np.tile(colscale.reshape(nK, nF).max(axis=0), nK)
    to_scaled = s_f / colscale
    pen = []
    if nK >= 3:
        D = np.zeros((nK - 2, nK))
        for i in range(nK - 2):
            D[i, i:i + 3] = (1.0, -2.0, 1.0)
        pen.append(SMOOTH_WEIGHT * np.kron(D, np.eye(nF)) * to_scaled[None, :])
    # no ridge on the constant and the pure leak-count terms (L, L^2, ...: they carry the leak current)
    free = [len(t) == 0 or (leak and all(i == len(orders) for i in t)) for t in terms]
    ridge = np.kron(np.eye(nK), np.diag([0.0 if fr else 1.0 for fr in free]))
    pen.append(RIDGE_WEIGHT * ridge[np.any(ridge != 0, axis=1)] * to_scaled[None, :])
    P = np.vstack(pen)
    if chunked:
        # the same least-squares problem, its rows reduced chunk by chunk to one triangular factor of
        # [design | rhs] (QR), so memory stays at FIT_DENSE_MAX_ELEMENTS whatever the sample count
        R = np.zeros((0, n_cols + 1))
        blocks = [(lo, min(lo + step, len(k))) for lo in range(0, len(k), step)]
        for lo, hi in blocks:
            blk = np.hstack([design(lo, hi) / colscale, (cur[lo:hi] * wt[lo:hi])[:, None]])
            R = np.linalg.qr(np.vstack([R, blk]), mode="r")
        R = np.linalg.qr(np.vstack([R, np.hstack([P, np.zeros((P.shape[0], 1))])]), mode="r")
        theta, *_ = np.linalg.lstsq(R[:n_cols, :n_cols], R[:n_cols, n_cols], rcond=None)
    else:
        M = np.vstack([Aw / colscale, P])
        rhs = np.concatenate([cur * wt, np.zeros(P.shape[0])])
        theta, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    theta = theta / colscale
    kk = np.arange(rows + 1, dtype=np.float64)
    coef = _hat(kk, knots) @ theta.reshape(knots.size, nF)
    # per-count offsets of the residual, shrunk where a count has few samples
    res = cur - np.einsum("nf,nf->n", coef[k], F)
    n_k = np.bincount(k, minlength=rows + 1).astype(np.float64)
    sum_k = np.bincount(k, weights=res, minlength=rows + 1)
    coef[:, 0] += np.where(n_k > 0, sum_k / np.maximum(n_k, 1) * n_k / (n_k + OFFSET_SHRINK), 0.0)
    # count-only baseline: mean SPICE current per count (interpolated where a count has no sample)
    mean = np.full(rows + 1, np.nan)
    std = np.zeros(rows + 1)
    for c in np.flatnonzero(n_k):
        s = cur[k == c]
        mean[c] = s.mean()
        std[c] = s.std()
    have = np.flatnonzero(~np.isnan(mean))
    mean = np.interp(kk, have, mean[have]) if have.size > 1 else np.full(rows + 1, np.nanmean(mean))
    arrays = {"coef": coef, "count_mean_a": mean, "count_std_a": std, "count_n": n_k, "knots": knots}
    # residual bound for certified reads (cosim.cim.arrays.CertifiedArray): the largest |residual| of the
    # final model per band of ON-counts, empty bands given the largest of all
    final = np.abs(cur - np.einsum("nf,nf->n", coef[k], F))
    band = certify_band_counts(rows)
    bmax = np.full(-(-(rows + 1) // band), -1.0)
    np.maximum.at(bmax, k // band, final)
    bmax[bmax < 0] = final.max()
    arrays["certify_residual_a"] = bmax
    meta = {"model": MODEL, "basis": "legendre+sine" if any(isinstance(o, str) for o in orders) else "legendre",
            "orders": orders, "leak": bool(leak),
            "variables": var_names, "terms": [list(t) for t in terms],
            "features": term_names(terms, var_names), "n_knots": int(knots.size),
            "certify_band_counts": int(band), "certify_safety": CERTIFY_SAFETY}
    return arrays, meta


def certify_band_counts(rows: int) -> int:
    """ON-counts per band of the recorded residual bound: 16 bands over 0..rows."""
    return max(1, -(-(rows + 1) // 16))


def fit_table(cfg: SweepConfig, samples, orders=None, leak: bool | str = "auto",
              n_knots: int | None = None, terms: str = "full"):
    """The LookupTable of a finished sweep (samples: ``load_points`` frame)."""
    from .. import provenance
    from ..circuit.spice import cell_currents
    from .tables import LookupTable

    cc = cell_currents(cfg.tech, cfg.topology)
    i_cell = float(cc["i_on_a"])
    if leak == "auto":
        leak = abs(cc["i_off_a"]) > LEAK_RATIO_MIN * abs(i_cell)
    orders = normalise_orders(DEFAULT_ORDERS if orders is None else orders)
    on, act = masks(samples, cfg.rows)
    arrays, meta = fit_arrays(on, act, samples["current_a"].to_numpy(), cfg.rows, i_cell, orders, bool(leak), n_knots,
                               default_terms(orders, bool(leak), terms))
    hashes = sorted(set(samples["netlist_sha256"]))
    prov = provenance.record(
        technology=cfg.tech.name, technology_params=cfg.tech.as_dict(), cell=cfg.tech.cell, rows=cfg.rows,
        cols=cfg.cols, topology=cfg.topology, r_wire_ohm=cfg.tech.r_wire_ohm,
        ngspice_version=",".join(sorted(set(samples["ngspice_version"]))),
        solver=",".join(sorted(set(samples["solver"]))),
        netlist_sha256=provenance.sha256_text("".join(hashes)), n_netlists=len(hashes), seed=cfg.seed,
        n_points=int(samples["point"].nunique()), n_samples=int(len(samples)), vectors_per_point=cfg.vectors,
        i_cell_a=i_cell, i_off_a=float(cc["i_off_a"]), i_idle_a=float(cc["i_idle_a"]),
        i_idle_off_a=float(cc["i_idle_off_a"]), spice_seconds=float(samples["seconds"].sum()),
    )
    meta["term_set"] = terms
    return LookupTable(arrays=arrays, meta=meta, provenance=prov)


def calibrate(cfg: SweepConfig, points: int, out_dir: str | Path, workers: int | None = None, orders=None,
              progress: bool = True, stop_after: int | None = None,
              log: Callable[[str], None] | None = None, scheduler: str | None = None, cache: Any = None,
              point_timeout_s: float | None = None, terms: str | None = None, n_knots: int | None = None,
              security: Any = None):
    """Run (or resume) the sweep, write ``samples.parquet`` and ``table.parquet`` into ``out_dir``.
    Returns the LookupTable. ``workers``, ``scheduler``, ``cache``, ``point_timeout_s``: see ``run_sweep``;
    ``terms`` (the term set, ``default_terms``), ``n_knots`` (ON-count knots) and ``orders``: the model
    form, each left None taken from ``model_form`` (the shipped table's form of this technology and size);
    ``security``: the TLS ``Security`` of a ``tls://`` scheduler (``cosim.sweep.executor.dask_security``)."""
    from .. import provenance

    form = model_form(cfg.tech.name, cfg.rows, terms, n_knots, orders)
    if cfg.solver not in SOLVERS:
        raise InputError(f"unknown calibration solver '{cfg.solver}': expected one of {', '.join(SOLVERS)}")
    terms, n_knots, orders = form.terms, form.n_knots, form.orders
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    check_writable(out_dir, "the output folder")   # before the probes below: a refusal comes first
    fallback = None
    if not cfg.tech.kind.linear:
        from ..circuit.netlist import fallback_warning, models_fallback
        fallback = models_fallback()
        if fallback and log:
            log(f"warning: {fallback_warning(fallback)}")
    paths = run_sweep(cfg, points, out_dir, workers=workers, progress=progress, stop_after=stop_after,
                      scheduler=scheduler, cache=cache, point_timeout_s=point_timeout_s, security=security)
    if len(paths) < points:
        raise CosimError(f"sweep stopped with {len(paths)} of {points} points finished (kept in {out_dir}); "
                         "run the same command again to resume")
    check = None
    if cfg.solver == "exact":
        check = ngspice_check(cfg, paths, points, workers=workers, scheduler=scheduler, cache=cache,
                              point_timeout_s=point_timeout_s, security=security)
        if log:
            log(f"ngspice cross-check: {len(check['points'])} of {points} points, {check['samples']} currents, "
                f"largest relative difference {check['max_rel_diff']:.2e}")
    samples = load_points(paths)
    table = fit_table(cfg, samples, orders=orders, terms=terms, n_knots=n_knots)
    if check is not None:
        table.provenance["ngspice_check"] = check
    if cfg.placements:
        table.provenance["placements"] = list(PLACEMENT_FAMILIES)
    if fallback:
        table.provenance["device_models_fallback"] = fallback
    if not cfg.tech.kind.linear:
        from ..circuit.netlist import resolve_models
        impl = resolve_models()
        table.provenance["device_models"] = impl
        if impl == "bsimcmg":
            from ..circuit import bsimcmg
            table.provenance["device_models_corner"] = bsimcmg.corner()
            table.provenance["device_models_card"] = bsimcmg.card_file().name
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = pa.Table.from_pandas(samples, preserve_index=False)
    md = dict(tbl.schema.metadata or {})
    md[b"cosim_provenance"] = json.dumps(provenance.record(**{k: v for k, v in table.provenance.items()
                                                                if k not in ("code_version", "python", "date_utc")}),
                                         sort_keys=True, default=str).encode()
    try:
        with atomic_path(out_dir / "samples.parquet", suffix=".parquet") as tmp:
            pq.write_table(tbl.replace_schema_metadata(md), tmp, compression="zstd")
        table.save(out_dir / "table.parquet")
    except OSError as e:
        raise StorageError(f"cannot write the table: {describe_os_error(e)} (all {len(paths)} points are kept in "
                           f"{out_dir}: fix that and run the same command again to fit it)") from None
    if log:
        log(f"{len(samples)} samples from {len(paths)} points, {time.perf_counter() - t0:.1f} s")
    return table
