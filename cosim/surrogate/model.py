"""The surrogate's model (``MODEL = "moments-v3"``), shared by the fit (``cosim.surrogate.fit``), the torch
surrogate (``cosim.surrogate.evaluate``) and its C kernel (``cosim.surrogate.kernel``).

For each column, from matrix products of the inputs with the weight columns times a few basis functions
of the row index (one product per order, plus, for leaky cells, one small product of the inputs alone),
the *variables*

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
rows of 8T-SRAM and 83 % at 256 rows. ``coef`` is fitted (``cosim.surrogate.fit``) by weighted least
squares (relative error), each coefficient piecewise linear in k between knots (``knot_counts``,
``hat_functions``), plus a per-count offset shrunk towards zero where a count has few samples. The table also holds the count-only baseline
(mean SPICE current per ON-count, which the calibrated ADC uses as its levels), the spread per count and
samples per count.

Coupled-topology tables (``meta["coupled"]``) carry further variables after these: the column's position along
the row lines and the load the other columns put on the rows it shares (``coupled_operands``, again inputs times
weight-side operands) and, for cells whose gate stays on at input 0 (1T-1R), the rows of input 0 (per-column
``coupled_offsets`` minus inputs times operands; ``coupled_variables``), with the terms of ``coupled_terms``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

MODEL = "moments-v3"
#: moment orders of the ON-pattern (m_e) and leak (nu_e) variables: Legendre orders, or "s<n>" for sines
DEFAULT_ORDERS = (1, 2, 3, 4)
#: term sets of ``default_terms``; ``cosim calibrate --terms``
TERM_SETS = ("full", "compact", "quartic")
#: most variables in one term (the kernel multiplies up to four)
MAX_DEGREE = 4
#: Legendre orders 1-4 and the sines s1-s8 of the IR-drop kernel
WITH_SINES = DEFAULT_ORDERS + tuple(f"s{n}" for n in range(1, 9))


# ---------------------------------------------------------------------------------------------------
# Orders, basis, variables and terms
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
    cols: list[np.ndarray] = [np.ones(rows)]
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
                terms: list[tuple[int, ...]] | None = None, extra: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """ON-counts (n,) and term matrix (n, F) of n column patterns, terms in the given order (default:
    ``default_terms``); ``extra`` (n, X): variables appended after the pattern's own (the coupled ones)."""
    k, v = variables_np(on, active, orders, leak)
    if extra is not None:
        v = np.concatenate([v, np.asarray(extra, dtype=np.float64).reshape(len(k), -1)], axis=1)
    terms = default_terms(orders, leak) if terms is None else terms
    cols = v.T
    F = np.ones((len(k), len(terms)))
    for f, t in enumerate(terms):
        F[:, f] = term_product(cols, t, F[:, f])
    return k, F


# ---------------------------------------------------------------------------------------------------
# The coupled topology: column position and row load
# ---------------------------------------------------------------------------------------------------
#: the coupled topology's variables (``coupled_operands``)
COUPLED_VARIABLES = ("pk", "t", "q", "q2", "tq", "t2", "q1", "t1", "tL", "qL", "q2L", "tqL", "z", "z1")
#: the coupled variables of the rows whose input is 0 (``coupled_offsets``): a variable's value is its offset
#: minus the inputs times its operands
COMPLEMENT_VARIABLES = ("z", "z1")
#: the coupled variables of a coupled table (after the others, in this order) without leak terms, and with them.
#: Measured on exact-solver points of 8T-SRAM 64 x 64 coupled arrays at 10 ohm (docs/VALIDATION.md, "Coupled-topology
#: tables"): pk and q carry most of it (held-out current error 19 % -> 3 % as terms of degree one), their products and
#: the products with the ON moments most of the rest (-> 0.2-0.7 %), q2 and tq the per-row curvature (-> 0.15-0.4 %);
#: t2, q1, t1 added nothing measurable. A cell whose input 0 drives its row line to 0 V (1T-1R, resistor: the gates
#: stay on) conducts backwards from its column line, raised by the column's wire and sink: z and z1, measured on 200
#: exact-solver points of 1T-1R 64 x 64 at 10 ohm held out on 2,048 columns per family, took the code agreement
#: (ideal / calibrated references) from 78.5-96.3 / 67.7-95.2 % to 96.3-97.4 / 93.5-96.1 %, the RMS current error
#: from 0.26-2.56 % to 0.24-0.46 % (docs/VALIDATION.md, "Coupled-topology tables"). An 8T-SRAM cell whose read word
#: line is off draws nothing, so its table has none.
COUPLED_PLAIN = ("pk", "t", "q", "q2", "tq")
COUPLED_LEAK = COUPLED_PLAIN + ("tL", "qL")


def coupled_names(leak: bool, drive: str = "gate") -> list[str]:
    """The coupled variables a coupled table of a cell without / with leak terms carries, and the complement
    variables where the input drives the row line (``drive`` "line", a cell kind's ``coupled_drive``: 1T-1R,
    resistor; "gate": 8T-SRAM, whose cells of input 0 draw nothing)."""
    return list(COUPLED_LEAK if leak else COUPLED_PLAIN) + (list(COMPLEMENT_VARIABLES) if drive == "line" else [])


def coupled_operands(w, names, rho: float, rows: int | None = None):
    """(R, C*X): the weight-side operands of the coupled variables ``names`` (X of them; column c*X + i is
    variable i of column c) for weights ``w`` (R, C) 0/1, numpy array or torch tensor alike; a vector's
    variables are its inputs times them, ``x @ coupled_operands(w)``, as the moments are.

    In the coupled topology every cell of row j draws its current through the line along that row (the
    8T read source line to its sink at column 0; the 1T-1R row line from its driver at column 0), so the
    line's voltage at column c moves by the sink's (driver's) resistance times the row's whole current
    and by the wire's times sum_c' min(c, c') I_jc': a column's drop grows with its position and with the
    current every other column draws on the rows it shares. With W~ = w + rho (1 - w) (rho = I_off/I_on:
    leaking cells draw current too) and p_c = c / C:

        pk   sum_j x_j w_jc p_c                                 (= k p_c: the column's position)
        t    sum_j x_j w_jc sum_c' W~_jc' / C                   (the row load at the sink / driver)
        q    sum_j x_j w_jc sum_c' min(c, c') W~_jc' / C^2      (the row load along the line)
        tL   sum_j x_j (1 - w_jc) sum_c' W~_jc' / C             (t and q of the column's leaking cells)
        qL   sum_j x_j (1 - w_jc) sum_c' min(c, c') W~_jc' / C^2

    and, as a cell's current is not linear in its row line's voltage, the per-row squares: with g_t, g_q the
    row loads of t and q above, ``q2`` = sum_j x_j w_jc 4 g_q^2, ``tq`` 2 g_t g_q, ``t2`` g_t^2 (and ``q2L``,
    ``tqL`` of the leaking cells), and ``q1``, ``t1``: q and t weighted by the row's place along the column
    (the first Legendre polynomial of j).

    Where an input of 0 drives its row line to 0 V while the cell's gate stays on (1T-1R, resistor), the rows
    whose input is 0 draw current backwards from the column line, which the column's wire and sink raise above
    0 V; ``z`` = sum_j (1 - x_j) W~_jc / R (its conducting cells there) and ``z1`` = the same weighted by p1_j,
    the row's place along the column line (R: the table's rows; a partly used tile's missing rows count as
    weight-0 cells). They are not inputs times operands but ``coupled_offsets`` minus them, so their operands
    here are minus the cells' (``coupled_variables`` adds the offsets).

    (x_j^2 = x_j: the row's load only flows where the row is driven, and the column's own cell only then.)
    ``rows``: the table's rows, where ``w`` holds only the first R of them (a partly used tile)."""
    R, C = w.shape
    rows = R if rows is None else int(rows)
    if isinstance(w, np.ndarray):
        xp_w = w.astype(np.float64)
        pos = np.arange(C, dtype=np.float64)
        kmin = np.minimum(pos[:, None], pos[None, :]) / (C * C)
        load = xp_w + rho * (1.0 - xp_w)
        g_t = np.broadcast_to(load.sum(axis=1, keepdims=True) / C, (R, C))
        g_q = load @ kmin
        p = np.broadcast_to(pos[None, :] / C, (R, C))
        stack = np.stack
    else:
        import torch
        xp_w = w
        pos = torch.arange(C, dtype=w.dtype, device=w.device)
        kmin = torch.minimum(pos[:, None], pos[None, :]) / (C * C)
        load = xp_w + rho * (1.0 - xp_w)
        g_t = (load.sum(dim=1, keepdim=True) / C).expand(R, C)
        g_q = load @ kmin
        p = (pos[None, :] / C).expand(R, C)
        stack = torch.stack
    p1 = (2.0 * (np.arange(rows, dtype=np.float64) + 0.5) / rows - 1.0)[:R]
    p1 = p1[:, None] if isinstance(w, np.ndarray) else torch.as_tensor(p1, dtype=w.dtype, device=w.device)[:, None]
    parts = {"pk": lambda: xp_w * p, "t": lambda: xp_w * g_t, "q": lambda: xp_w * g_q,
             "tL": lambda: (1.0 - xp_w) * g_t, "qL": lambda: (1.0 - xp_w) * g_q,
             "q2": lambda: xp_w * g_q * g_q * 4.0, "t2": lambda: xp_w * g_t * g_t, "tq": lambda: xp_w * g_t * g_q * 2.0,
             "q1": lambda: xp_w * g_q * p1, "t1": lambda: xp_w * g_t * p1,
             "q2L": lambda: (1.0 - xp_w) * g_q * g_q * 4.0, "tqL": lambda: (1.0 - xp_w) * g_t * g_q * 2.0,
             "z": lambda: -load / rows, "z1": lambda: -load * p1 / rows}
    try:
        cols = [parts[n]() for n in names]
    except KeyError as e:
        raise InputError(f"unknown coupled variable {e}: expected some of {', '.join(parts)}") from None
    return stack(cols, -1).reshape(R, C * len(cols))


def coupled_offsets(w, names, rho: float, rows: int | None = None):
    """(C*X,): what each coupled variable ``names`` of ``coupled_operands`` adds to the inputs times its operands
    (column c*X + i, as there), for weights ``w`` (R, C): zero but for the complement variables (``z``, ``z1``),
    whose offset is the sum of their cells over every row, the ``rows`` - R rows a partly used tile lacks counted
    as weight-0 cells. numpy array or torch tensor alike."""
    R, C = w.shape
    rows = R if rows is None else int(rows)
    p1 = 2.0 * (np.arange(rows, dtype=np.float64) + 0.5) / rows - 1.0
    missing = {"z": rho * (rows - R) / rows, "z1": rho * float(p1[R:].sum()) / rows}
    torch_w = not isinstance(w, np.ndarray)
    if torch_w:
        import torch
    xp_w = w if torch_w else w.astype(np.float64)
    load = xp_w + rho * (1.0 - xp_w)
    out = []
    for n in names:
        if n not in COUPLED_VARIABLES:
            raise InputError(f"unknown coupled variable '{n}': expected some of {', '.join(COUPLED_VARIABLES)}")
        if n not in COMPLEMENT_VARIABLES:
            out.append(load[0] * 0.0)
            continue
        if n == "z":
            col = load.sum(0) / rows + missing[n]
        else:
            weight = torch.as_tensor(p1[:R], dtype=w.dtype, device=w.device) if torch_w else p1[:R]
            col = (load * weight[:, None]).sum(0) / rows + missing[n]
        out.append(col)
    if torch_w:
        return torch.stack(out, -1).reshape(C * len(names)) if out else w.new_zeros(0)
    return np.stack(out, -1).reshape(C * len(names)) if out else np.zeros(0)


def coupled_variables(x, w, names, rho: float, rows: int | None = None):
    """(N, C*X): the coupled variables ``names`` of input vectors ``x`` (N, R) on weights ``w`` (R, C): the inputs
    times ``coupled_operands``, plus ``coupled_offsets`` for every vector with an input 1 (a vector of no 1
    drives no row: every variable of it is zero). numpy arrays or torch tensors alike."""
    if isinstance(w, np.ndarray):
        xf = np.asarray(x, dtype=np.float64)
        driven = (xf != 0).any(1, keepdims=True).astype(np.float64)
    else:
        xf = x.to(w.dtype)
        driven = (xf != 0).any(1, keepdim=True).to(w.dtype)
    out = xf @ coupled_operands(w, names, rho, rows=rows)
    if any(n in COMPLEMENT_VARIABLES for n in names):
        out = out + driven * coupled_offsets(w, names, rho, rows=rows)
    return out


def coupled_terms(orders, leak: bool, names) -> list[tuple[int, ...]]:
    """The terms a coupled table adds to ``default_terms`` (indices into the variables: ``variable_names``
    then the coupled ``names``): every coupled variable of the ON cells, the products of every two, and each
    times every Legendre ON moment; the leaking cells' (names ending in ``L``) alone, times the leaking-cell
    count L, times each coupled variable of the ON cells, and squared; the rows of input 0 (``z``, ``z1``) alone,
    squared, times each other and times every other variable."""
    from itertools import combinations_with_replacement

    orders = normalise_orders(orders)
    base = len(variable_names(orders, leak))
    comp = [base + i for i, n in enumerate(names) if n in COMPLEMENT_VARIABLES]
    z = [base + i for i, n in enumerate(names) if not str(n).endswith("L") and n not in COMPLEMENT_VARIABLES]
    zl = [base + i for i, n in enumerate(names) if str(n).endswith("L")]
    poly = [i for i, o in enumerate(orders) if isinstance(o, int)]
    terms: list[tuple[int, ...]] = [(i,) for i in z]
    terms += list(combinations_with_replacement(z, 2))
    terms += [(e, i) for i in z for e in poly]
    if zl:
        n_leak = len(orders)                       # the index of L (variable_names)
        terms += [(i,) for i in zl] + [(n_leak, i) for i in zl] + [(i, j) for i in zl for j in z] + [(i, i) for i in zl]
    others = [i for i in range(base + len(names)) if i not in comp]
    for v in comp:
        terms += [(v,), (v, v)] + [(i, v) for i in others] + [(v, u) for u in comp if u < v]
    return terms


# ---------------------------------------------------------------------------------------------------
# Evaluation, written once for numpy arrays and torch tensors alike (the C kernel of
# cosim.surrogate.kernel does the same; tests/test_surrogate_fast.py checks that all three agree)
# ---------------------------------------------------------------------------------------------------
def term_product(variables, term, first):
    """``first`` times the term's variables in the term's order, ``first * v[i0] * v[i1] ...``
    (``variables``: a sequence of equally shaped numpy arrays or torch tensors, one per variable)."""
    out = first
    for i in term:
        out = out * variables[i]
    return out


def product_variables(k, m, xs, n_orders: int) -> list:
    """The model's variables (``variable_names``' order) of a chunk of n vectors by C columns from the
    products the surrogate computes: ON-counts ``k`` (n, C, integers), moments ``m`` (n, C*E: moment e
    of column c at c*E + e) and, for leak tables, ``xs`` (n, 1+E): the inputs' own row sums and moments
    (None otherwise); L = xs_0 - k, nu_e = xs_e - m_e. numpy arrays or torch tensors alike."""
    n, c = k.shape
    mom = m.reshape(n, c, n_orders)
    var = [mom[..., e] for e in range(n_orders)]
    if xs is not None:
        var.append(xs[:, :1] - k.astype(m.dtype) if isinstance(k, np.ndarray) else xs[:, :1] - k.to(m.dtype))
        var += [xs[:, 1 + e:2 + e] - var[e] for e in range(n_orders)]
    return var


def term_sum(variables, terms, coef_at, out):
    """``out`` plus the sum over the terms f of ``coef_at(f)`` (the coefficient of term f at every
    element's ON-count) times the term (``term_product``): the column currents of the model."""
    for f, t in enumerate(terms):
        out += term_product(variables, t, coef_at(f))
    return out


# ---------------------------------------------------------------------------------------------------
# Knots: every coefficient is piecewise linear in the ON-count between knots
# ---------------------------------------------------------------------------------------------------
def knot_counts(rows: int, n_knots: int | None) -> np.ndarray:
    """The ON-counts of the knots: ``n_knots`` evenly spaced over 0..rows (default: at most 33, one per
    two counts, at least 5)."""
    n = n_knots or min(rows + 1, max(5, rows // 2 + 1), 33)
    return np.unique(np.rint(np.linspace(0, rows, n)))


def hat_functions(k: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """(n, K): the linear interpolation weights of the counts ``k`` between the knots (hat functions)."""
    pos = np.interp(k, knots, np.arange(knots.size))
    i0 = np.clip(np.floor(pos).astype(int), 0, max(knots.size - 2, 0))
    fr = pos - i0
    B = np.zeros((k.size, knots.size))
    B[np.arange(k.size), i0] = 1 - fr
    if knots.size > 1:
        B[np.arange(k.size), i0 + 1] += fr
    return B
