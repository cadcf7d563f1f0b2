"""The exact solver's decoupled topology in torch (float64, CPU or CUDA): the same circuit, cells and
Newton iteration as the C kernel (cosim/circuit/solver_kernel.c), vectorised over columns instead of looped.

The cells are a line-for-line port of ``fet_current`` in device_models/osdi/cosim_devices.c (the
device code the ngspice decks load) with its analytic derivatives; the 8T read stack's and the 1T-1R
cell's inner nodes are solved by the same safeguarded Newton, predicted from the last solve, with the
same stopping rules; each Newton iteration of the line voltages is a block-tridiagonal (2x2 blocks)
solve by the block Thomas algorithm, one step per row for all columns at once (a zero-ohm line beside a
resistive one: a tridiagonal solve bordered by that line's one node, ``_solve_mixed``). On a CPU the C kernel
is faster (torch's per-operation overhead on R sequential steps); this path is for GPUs, where one
batch holds 10^4-10^5 columns. cosim.circuit.solver.solve_array(..., backend="torch", device=...) uses it.
"""

from __future__ import annotations

import torch

from .solver_kernel import KIND

#: indices of the FET parameters (the C enum)
_POL, _K, _A, _VT, _C, _S, _ETA, _LAM, _PHIT = range(1, 10)
INNER_LAST_STEP_V = 1e-6     # as solver_kernel.c


def fet_current(p, nfin: float, Vd, Vg, Vs):
    """Current d -> s and its derivatives d/dVd, d/dVg, d/dVs (port of fet_current in cosim_devices.c)."""
    pol = -1.0 if p[_POL] < 0 else 1.0
    vd, vg, vs = pol * Vd, pol * Vg, pol * Vs
    d_low = vd < vs
    vgs = vg - torch.where(d_low, vd, vs)
    vds = vd - vs
    sgn = torch.where(vds < 0, -1.0, 1.0).to(vds.dtype)
    avds = vds.abs()
    a_s = p[_A] * p[_S]
    z = (vgs - p[_VT] + p[_ETA] * avds) / a_s
    u = z.clamp(min=0.0) + torch.log1p(torch.exp(-z.abs()))
    du_dz = torch.sigmoid(z)
    tiny = u < 1e-30
    u = torch.where(tiny, torch.full_like(u, 1e-30), u)
    du_dz = torch.where(tiny, torch.zeros_like(du_dz), du_dz)
    pw = torch.pow(a_s * u, p[_A])
    dpw_du = p[_A] * pw / u
    lfac = 1.0 + p[_LAM] * avds
    dl_dvds = p[_LAM] * sgn
    den = p[_C] * a_s * u + 2.0 * p[_PHIT]
    th = torch.tanh(vds / den)
    sech2 = 1.0 - th * th
    dth_dvds = sech2 / den
    dth_du = -sech2 * vds / (den * den) * p[_C] * a_s
    kk = nfin * p[_K]
    i_d = kk * pw * lfac * th
    di_du = kk * (dpw_du * lfac * th + pw * lfac * dth_du)
    di_dvgs = di_du * du_dz / a_s
    di_dvds = kk * pw * (dl_dvds * th + lfac * dth_dvds) + di_du * du_dz * p[_ETA] * sgn / a_s
    zero = torch.zeros_like(di_dvgs)
    gd = di_dvds + torch.where(d_low, -di_dvgs, zero)
    gs = -di_dvds + torch.where(d_low, zero, -di_dvgs)
    return pol * i_d, gd, di_dvgs, gs


class Cells:
    """The cells of one technology; ``eval(s1, s2, va, vb, ws)`` -> ia, ib, (dia/dva, dia/dvb, dib/dva,
    dib/dvb); ``ws`` (m, va, vb, dm/dva, dm/dvb) is updated in place (the inner node's warm start)."""

    def __init__(self, par) -> None:
        self.kind = int(par.kind)
        self.p = [float(v) for v in par.fet]
        self.nfin = float(par.nfin)
        self.i0, self.g0, self.v0 = float(par.re_i0_a), float(par.re_g0_m), float(par.re_v0_v)
        self.gsh = float(par.g_inner_shunt_s)

    def eval(self, s1, s2, va, vb, ws):
        if self.kind == KIND["resistor"]:
            g = s1 * s2
            i = g * (va - vb)
            return i, i, (g, -g, g, -g)
        lo = torch.minimum(va, vb)
        hi = torch.maximum(va, vb)
        if self.kind == KIND["reram1t1r"]:
            lo = lo.clamp(max=0.0)
            hi = hi.clamp(min=0.0)
        m_old, va_old, vb_old, dma, dmb = ws.unbind(-1)
        pred = m_old + dma * (va - va_old) + dmb * (vb - vb_old)
        inside = lambda t: (t > lo) & (t < hi)  # noqa: E731
        m = torch.where(inside(pred), pred, torch.where(inside(m_old), m_old, 0.5 * (lo + hi)))
        out = self._inner(s1, s2, va, vb, m, lo, hi)
        m, ia, ib, J, dm_a, dm_b = out
        ws[..., 0], ws[..., 1], ws[..., 2], ws[..., 3], ws[..., 4] = m, va, vb, dm_a, dm_b
        return ia, ib, J

    def _f(self, s1, s2, va, vb, m):
        """(f, df/dm, the terms kept for the result) of the inner current balance at m."""
        if self.kind == KIND["sram8t"]:
            i1, gd1, _, gs1 = fet_current(self.p, self.nfin, va, s1, m)
            i2, gd2, _, gs2 = fet_current(self.p, self.nfin, m, s2, vb)
            return i1 - i2, gs1 - gd2, (i1, i2, gd1, gs1, gd2, gs2)
        x = (va - m) / self.v0
        ipre = self.i0 * torch.exp(-s2 / self.g0)
        ir = ipre * torch.sinh(x)
        gr = ipre * torch.cosh(x) / self.v0
        ifet, gfd, _, gfs = fet_current(self.p, self.nfin, m, s1, vb)
        return ir - ifet - self.gsh * m, -(gr + gfd + self.gsh), (ir, ifet, gr, gfd, gfs)

    def _inner(self, s1, s2, va, vb, m, lo, hi):
        n = m.shape[0]
        idx = torch.arange(n, device=m.device)
        cur_m, cur_lo, cur_hi = m, lo, hi
        final_m = m.clone()
        final_terms = None
        for _ in range(200):
            a1, a2, av, bv = s1[idx], s2[idx], va[idx], vb[idx]
            f, fm, terms = self._f(a1, a2, av, bv, cur_m)
            pos = f > 0
            cur_lo = torch.where(pos, cur_m, cur_lo)
            cur_hi = torch.where(pos, cur_hi, cur_m)
            scale = terms[0].abs() + terms[1].abs()      # |i1| + |i2|, or |Ir| + |Ifet|
            done = (f.abs() <= 1e-13 * scale + 1e-30) | (cur_hi - cur_lo <= 1e-15 * (1.0 + cur_m.abs()))
            mid = 0.5 * (cur_lo + cur_hi)
            nxt = torch.where(fm < 0, cur_m - f / torch.where(fm < 0, fm, -torch.ones_like(fm)), mid)
            thr = (torch.minimum((nxt - av).abs(), (nxt - bv).abs()) * 1e-3).clamp(max=INNER_LAST_STEP_V)
            last = (~done) & (fm < 0) & ((nxt - cur_m).abs() <= thr) & (nxt > cur_lo) & (nxt < cur_hi)
            # a last sub-rounding step: move the currents along their derivatives
            dm = torch.where(last, nxt - cur_m, torch.zeros_like(cur_m))
            terms = self._moved(terms, dm)
            m_fin = torch.where(last, nxt, cur_m)
            fin = done | last
            if final_terms is None:
                final_terms = [torch.zeros(n, dtype=m.dtype, device=m.device) for _ in terms]
            fi = idx[fin]
            final_m[fi] = m_fin[fin]
            for t_all, t in zip(final_terms, terms):
                t_all[fi] = t[fin]
            keep = ~fin
            if not bool(keep.any()):
                break
            nxt = torch.where((nxt > cur_lo) & (nxt < cur_hi), nxt, mid)
            idx, cur_m, cur_lo, cur_hi = idx[keep], nxt[keep], cur_lo[keep], cur_hi[keep]
        else:  # 200 iterations without meeting a rule: keep where it stands, as cosim_stack does
            f, fm, terms = self._f(s1[idx], s2[idx], va[idx], vb[idx], cur_m)
            final_m[idx] = cur_m
            for t_all, t in zip(final_terms, terms):
                t_all[idx] = t
        return self._result(final_m, final_terms)

    def _moved(self, terms, dm):
        if self.kind == KIND["sram8t"]:
            i1, i2, gd1, gs1, gd2, gs2 = terms
            return (i1 + gs1 * dm, i2, gd1, gs1, gd2, gs2)
        ir, ifet, gr, gfd, gfs = terms
        return (ir - gr * dm, ifet + gfd * dm, gr, gfd, gfs)

    def _result(self, m, terms):
        if self.kind == KIND["sram8t"]:
            i1, _, gd1, gs1, gd2, gs2 = terms
            fm = gs1 - gd2
            fm = torch.where(fm > -1e-300, torch.full_like(fm, -1e-300), fm)
            dm_d, dm_s = -gd1 / fm, gs2 / fm
            g_d, g_s = gd1 + gs1 * dm_d, gs1 * dm_s
            return m, i1, i1, (g_d, g_s, g_d, g_s), dm_d, dm_s
        ir, ifet, gr, gfd, gfs = terms
        D = (gr + gfd + self.gsh).clamp(min=1e-300)
        dm_a, dm_b = gr / D, -gfs / D
        return m, ir, ifet, (gr * (1.0 - dm_a), -gr * dm_b, gfd * dm_a, gfd * dm_b + gfs), dm_a, dm_b


def solve_decoupled(spec, x, w, *, par, states, ws0, max_iter: int, reltol: float, vntol_v: float, abstol_a: float,
                    dv_max_v: float, device="cpu", chunk: int = 32768):
    """(currents (K, C), iterations (K, C), status (K, C)) as numpy arrays; see cosim.circuit.solver."""
    import numpy as np

    from .solver import _conductance, column_wire_ohm, g_shunt_s

    dev = torch.device(device)
    f64 = torch.float64
    tech = spec.tech
    K, R, C = x.shape[0], spec.rows, spec.cols
    cells = Cells(par)
    st = torch.as_tensor(np.asarray(states).reshape(4, 2), dtype=f64, device=dev)
    ws0t = torch.as_tensor(np.asarray(ws0), dtype=f64, device=dev)      # (4, 5) each state at ideal bias
    xt = torch.as_tensor(np.asarray(x, np.int64), device=dev)
    wt = torch.as_tensor(np.asarray(w, np.int64).T.copy(), device=dev)      # (C, R)
    r_bl, r_sl = column_wire_ohm(tech)
    gb, gs = _conductance(r_bl), _conductance(r_sl)
    merged = gb == 0.0
    N = 1 if merged else R
    drv_fixed, snk_fixed = tech.r_driver_ohm == 0, tech.r_sink_ohm == 0
    gd = _conductance(tech.r_driver_ohm)
    gsh = g_shunt_s(spec)
    gk = 0.0 if snk_fixed else _conductance(tech.r_sink_ohm) + gsh
    vr = tech.v_read_v
    if (gb == 0.0) != (gs == 0.0):
        return _solve_mixed(cells, st, ws0t, xt, wt, K, R, C, gb=gb, gs=gs, gsh=gsh, gd=gd, gk=gk,
                            drv_fixed=drv_fixed, snk_fixed=snk_fixed, vr=vr, max_iter=max_iter, reltol=reltol,
                            vntol_v=vntol_v, abstol_a=abstol_a, dv_max_v=dv_max_v, dev=dev, chunk=chunk)
    cur = torch.full((K * C,), float("nan"), dtype=f64, device=dev)
    status = torch.ones(K * C, dtype=torch.int32, device=dev)
    iters = torch.full((K * C,), max_iter, dtype=torch.int32, device=dev)
    for q0 in range(0, K * C, chunk):
        q = torch.arange(q0, min(K * C, q0 + chunk), device=dev)
        Q = q.numel()
        state = 2 * xt[q // C] + wt[q % C]                  # (Q, R)
        s1, s2 = st[state, 0], st[state, 1]
        ws = ws0t[state].clone()
        vb = torch.full((Q, N), vr, dtype=f64, device=dev)
        vs = torch.zeros(Q, N, dtype=f64, device=dev)
        active, out_i, out_st, out_it, i_prev, d_prev = _tracking(Q, max_iter, dev)
        rows = torch.arange(R, device=dev)
        for it in range(1, max_iter + 1):
            a = active.nonzero().squeeze(1)
            if a.numel() == 0:
                break
            b_, s_ = vb[a], vs[a]
            node = torch.zeros(R, dtype=torch.long, device=dev) if merged else rows
            va_c, vb_c = b_[:, node], s_[:, node]
            wsa = ws[a]
            ia, ib, J = cells.eval(s1[a].reshape(-1), s2[a].reshape(-1), va_c.reshape(-1), vb_c.reshape(-1),
                                   wsa.view(-1, 5))
            ws[a] = wsa
            n_a = a.numel()
            ia, ib = ia.view(n_a, R), ib.view(n_a, R)
            J = [j.view(n_a, R) for j in J]
            if merged:
                ia, ib = ia.sum(1, keepdim=True), ib.sum(1, keepdim=True)
                J = [j.sum(1, keepdim=True) for j in J]
            elif it == 1:
                # the first step's linear model of each cell, as the C kernel's (solver_kernel.c, dec_run_lanes):
                # its chord through 0 V where that is a smaller (positive) conductance than its tangent
                g = ia / vr
                use = (g > 0) & (g < J[0])
                J = [torch.where(use, g, J[0]), torch.where(use, -g, J[1]), torch.where(use, ib / vr, J[2]),
                     torch.where(use, -ib / vr, J[3])]
            # residuals (currents leaving) and the blocks
            fb = gsh * b_ + ia
            fs = gsh * s_ - ib
            a00 = gsh + J[0]
            a01 = J[1].clone()
            a10 = -J[2]
            a11 = gsh - J[3]
            if not merged:
                fb[:, 1:] += gb * (b_[:, 1:] - b_[:, :-1])
                fb[:, :-1] += gb * (b_[:, :-1] - b_[:, 1:])
                fs[:, 1:] += gs * (s_[:, 1:] - s_[:, :-1])
                fs[:, :-1] += gs * (s_[:, :-1] - s_[:, 1:])
                nb = torch.full((N,), 2 * gb, dtype=f64, device=dev)
                nb[0] -= gb
                nb[-1] -= gb
                ns = torch.full((N,), 2 * gs, dtype=f64, device=dev)
                ns[0] -= gs
                ns[-1] -= gs
                a00 = a00 + nb
                a11 = a11 + ns
            if not drv_fixed:
                fb[:, 0] += gd * (b_[:, 0] - vr)
                a00[:, 0] += gd
            if not snk_fixed:
                fs[:, -1] += gk * s_[:, -1]
                a11[:, -1] += gk
            flow = dflow_b = dflow_s = None
            if snk_fixed:
                flow = ib[:, -1].clone()
                dflow_b, dflow_s = J[2][:, -1], J[3][:, -1]
                if N > 1:
                    flow += gs * (s_[:, -2] - s_[:, -1])
            Ub = torch.full((n_a, N), -gb if not merged else 0.0, dtype=f64, device=dev)
            Us = torch.full((n_a, N), -gs if not merged else 0.0, dtype=f64, device=dev)
            Lb = Ub.clone()
            Ls = Us.clone()
            Ub[:, -1] = 0.0
            Us[:, -1] = 0.0
            Lb[:, 0] = 0.0
            Ls[:, 0] = 0.0
            if drv_fixed:
                fb[:, 0] = b_[:, 0] - vr
                a00[:, 0], a01[:, 0] = 1.0, 0.0
                Ub[:, 0] = 0.0
            if snk_fixed:
                fs[:, -1] = s_[:, -1]
                a10[:, -1], a11[:, -1] = 0.0, 1.0
                Ls[:, -1] = 0.0
            # block Thomas
            cp = torch.empty(n_a, N, 4, dtype=f64, device=dev)
            db = torch.empty(n_a, N, dtype=f64, device=dev)
            ds = torch.empty(n_a, N, dtype=f64, device=dev)
            bad = torch.zeros(n_a, dtype=torch.bool, device=dev)
            for n in range(N):
                m00, m01, m10, m11 = a00[:, n], a01[:, n], a10[:, n], a11[:, n]
                r0, r1 = -fb[:, n], -fs[:, n]
                if n > 0:
                    c_ = cp[:, n - 1]
                    m00 = m00 - Lb[:, n] * c_[:, 0]
                    m01 = m01 - Lb[:, n] * c_[:, 1]
                    m10 = m10 - Ls[:, n] * c_[:, 2]
                    m11 = m11 - Ls[:, n] * c_[:, 3]
                    r0 = r0 - Lb[:, n] * db[:, n - 1]
                    r1 = r1 - Ls[:, n] * ds[:, n - 1]
                det = m00 * m11 - m01 * m10
                bad |= ~(det.abs() > 1e-300) | ~torch.isfinite(det)
                i0, i1, i2, i3 = m11 / det, -m01 / det, -m10 / det, m00 / det
                cp[:, n, 0], cp[:, n, 1] = i0 * Ub[:, n], i1 * Us[:, n]
                cp[:, n, 2], cp[:, n, 3] = i2 * Ub[:, n], i3 * Us[:, n]
                db[:, n] = i0 * r0 + i1 * r1
                ds[:, n] = i2 * r0 + i3 * r1
            for n in range(N - 2, -1, -1):
                c_ = cp[:, n]
                db[:, n] -= c_[:, 0] * db[:, n + 1] + c_[:, 1] * ds[:, n + 1]
                ds[:, n] -= c_[:, 2] * db[:, n + 1] + c_[:, 3] * ds[:, n + 1]
            dmax = torch.maximum(db.abs().amax(1), ds.abs().amax(1))
            nonfinite = ~torch.isfinite(dmax) & ~bad
            scale = torch.where(dmax > dv_max_v, dv_max_v / dmax.clamp(min=1e-300), torch.ones_like(dmax))
            nb_, ns_ = b_ + scale[:, None] * db, s_ + scale[:, None] * ds
            conv = (scale == 1.0) & ((nb_ - b_).abs() <= reltol * torch.maximum(nb_.abs(), b_.abs()) + vntol_v).all(1) \
                & ((ns_ - s_).abs() <= reltol * torch.maximum(ns_.abs(), s_.abs()) + vntol_v).all(1)
            vb[a], vs[a] = nb_, ns_
            if snk_fixed:
                i_s = flow + scale * (dflow_b * db[:, -1] + dflow_s * ds[:, -1])  # type: ignore[operator]  # set when snk_fixed
                if N > 1:
                    i_s = i_s + scale * gs * (ds[:, -2] - ds[:, -1])
            else:
                i_s = gk * ns_[:, -1]
            _settle(a, i_s, conv, bad, nonfinite, it, i_prev, d_prev, out_i, out_st, out_it, active, reltol, abstol_a)
        cur[q0:q0 + Q], status[q0:q0 + Q], iters[q0:q0 + Q] = out_i, out_st, out_it
    return (cur.view(K, C).cpu().numpy(), iters.view(K, C).cpu().numpy(), status.view(K, C).cpu().numpy())


def _tracking(Q: int, max_iter: int, dev):
    """What ``_settle`` keeps for a chunk of ``Q`` columns: which are still active, their results (current,
    status 1 = not converged, iterations) and the previous sensed current and its change."""
    f64 = torch.float64
    return (torch.ones(Q, dtype=torch.bool, device=dev), torch.full((Q,), float("nan"), dtype=f64, device=dev),
            torch.ones(Q, dtype=torch.int32, device=dev), torch.full((Q,), max_iter, dtype=torch.int32, device=dev),
            torch.full((Q,), float("nan"), dtype=f64, device=dev), torch.full((Q,), float("inf"), dtype=f64, device=dev))


def _settle(a, i_s, conv, bad, nonfinite, it, i_prev, d_prev, out_i, out_st, out_it, active, reltol, abstol_a):
    """The shared convergence test of the decoupled column solves, for the active columns ``a``: a column is
    done when its line voltages converged (``conv``) and its sensed current ``i_s`` settled (its last change
    within tolerance, or the error a quadratic convergence leaves, change^2 / previous change, 100x below
    it), or when it failed (``bad``: no convergence, status 3; a non-finite step or current, status 2).
    Records the results of the done columns and retires them from ``active``."""
    ip = i_prev[a]
    has_prev = torch.isfinite(ip)
    d = (i_s - ip).abs()
    tol = reltol * i_s.abs() + abstol_a
    dp = d_prev[a]
    settled = has_prev & ((d <= tol) | ((d < dp) & (d * d <= 0.01 * tol * dp)))
    ok = conv & settled & ~bad & ~nonfinite & torch.isfinite(i_s)
    d_prev[a] = torch.where(has_prev, d, dp)
    i_prev[a] = i_s
    fail = bad | nonfinite | ~torch.isfinite(i_s)
    out_i[a[ok]] = i_s[ok]
    out_st[a[ok]] = 0
    out_it[a[ok | fail]] = it
    out_st[a[bad]] = 3
    out_st[a[(nonfinite | ~torch.isfinite(i_s)) & ~bad]] = 2
    active[a[ok | fail]] = False


def _solve_mixed(cells, st, ws0t, xt, wt, K, R, C, *, gb, gs, gsh, gd, gk, drv_fixed, snk_fixed, vr, max_iter,
                 reltol, vntol_v, abstol_a, dv_max_v, dev, chunk):
    """``solve_decoupled`` where one of the bit and source lines (not both) has zero-ohm wires: that line is
    one node M, the other R nodes L; the Jacobian is tridiagonal in L bordered by M (the C kernel's
    dec_run_mixed): the Thomas algorithm on two right-hand sides, then M's step by the Schur complement."""
    f64 = torch.float64
    lbit = gb != 0.0                         # L is the bit line (the source line merged), else the source line
    gl = gb if lbit else gs
    m_fixed = snk_fixed if lbit else drv_fixed
    m_value = 0.0 if lbit else vr
    l_fixed = drv_fixed if lbit else snk_fixed
    lr = 0 if lbit else R - 1
    l_value = vr if lbit else 0.0
    cur = torch.full((K * C,), float("nan"), dtype=f64, device=dev)
    status = torch.ones(K * C, dtype=torch.int32, device=dev)
    iters = torch.full((K * C,), max_iter, dtype=torch.int32, device=dev)
    wire = torch.full((R,), 2 * gl, dtype=f64, device=dev)
    wire[0] -= gl
    wire[-1] -= gl
    for q0 in range(0, K * C, chunk):
        q = torch.arange(q0, min(K * C, q0 + chunk), device=dev)
        Q = q.numel()
        state = 2 * xt[q // C] + wt[q % C]
        s1, s2 = st[state, 0], st[state, 1]
        ws = ws0t[state].clone()
        Lv = torch.full((Q, R), vr if lbit else 0.0, dtype=f64, device=dev)
        Mv = torch.full((Q,), 0.0 if lbit else vr, dtype=f64, device=dev)
        active, out_i, out_st, out_it, i_prev, d_prev = _tracking(Q, max_iter, dev)
        for it in range(1, max_iter + 1):
            a_ = active.nonzero().squeeze(1)
            if a_.numel() == 0:
                break
            n_a = a_.numel()
            L, M = Lv[a_], Mv[a_]
            Mr = M[:, None].expand(n_a, R)
            va, vb = (L, Mr) if lbit else (Mr, L)
            wsa = ws[a_]
            ia, ib, J = cells.eval(s1[a_].reshape(-1), s2[a_].reshape(-1), va.reshape(-1), vb.reshape(-1),
                                   wsa.view(-1, 5))
            ws[a_] = wsa
            ia, ib = ia.view(n_a, R), ib.view(n_a, R)
            J = [j.view(n_a, R) for j in J]
            f = gsh * L
            f[:, 1:] += gl * (L[:, 1:] - L[:, :-1])
            f[:, :-1] += gl * (L[:, :-1] - L[:, 1:])
            dia = (gsh + wire).expand(n_a, R).clone()
            sub = torch.full((n_a, R), -gl, dtype=f64, device=dev)
            sub[:, 0] = 0.0
            sup = torch.full((n_a, R), -gl, dtype=f64, device=dev)
            sup[:, -1] = 0.0
            fM = gsh * M
            a = torch.full((n_a,), gsh, dtype=f64, device=dev)
            if lbit:
                if not drv_fixed:
                    f[:, 0] += gd * (L[:, 0] - vr)
                    dia[:, 0] += gd
                if not snk_fixed:
                    fM = fM + gk * M
                    a = a + gk
                f = f + ia
                dia = dia + J[0]
                u = J[1].clone()
                fM = fM - ib.sum(1)
                a = a - J[3].sum(1)
                v = -J[2]
                flow, dflow_dm = ib.sum(1), J[3].sum(1)
            else:
                if not drv_fixed:
                    fM = fM + gd * (M - vr)
                    a = a + gd
                if not snk_fixed:
                    f[:, -1] += gk * L[:, -1]
                    dia[:, -1] += gk
                f = f - ib
                dia = dia - J[3]
                u = -J[2]
                fM = fM + ia.sum(1)
                a = a + J[0].sum(1)
                v = J[1].clone()
                flow, dflow_dm = ib[:, -1].clone(), J[2][:, -1]
                if R > 1:
                    flow = flow + gl * (L[:, -2] - L[:, -1])
            if m_fixed:
                fM = M - m_value
                a = torch.ones_like(a)
                v = torch.zeros_like(v)
            if l_fixed:
                f[:, lr] = L[:, lr] - l_value
                dia[:, lr], sub[:, lr], sup[:, lr], u[:, lr] = 1.0, 0.0, 0.0, 0.0
            # Thomas on T y = -F_L and T z = u, then the border
            cq = torch.empty(n_a, R, dtype=f64, device=dev)
            y = torch.empty(n_a, R, dtype=f64, device=dev)
            z = torch.empty(n_a, R, dtype=f64, device=dev)
            bad = torch.zeros(n_a, dtype=torch.bool, device=dev)
            for n in range(R):
                m, ry, rz = dia[:, n], -f[:, n], u[:, n]
                if n > 0:
                    m = m - sub[:, n] * cq[:, n - 1]
                    ry = ry - sub[:, n] * y[:, n - 1]
                    rz = rz - sub[:, n] * z[:, n - 1]
                bad |= ~(m.abs() > 1e-300) | ~torch.isfinite(m)
                cq[:, n], y[:, n], z[:, n] = sup[:, n] / m, ry / m, rz / m
            for n in range(R - 2, -1, -1):
                y[:, n] -= cq[:, n] * y[:, n + 1]
                z[:, n] -= cq[:, n] * z[:, n + 1]
            den = a - (v * z).sum(1)
            bad |= ~(den.abs() > 1e-300) | ~torch.isfinite(den)
            dM = (-fM - (v * y).sum(1)) / den
            dL = y - z * dM[:, None]
            dmax = torch.maximum(dL.abs().amax(1), dM.abs())
            nonfinite = ~torch.isfinite(dmax) & ~bad
            scale = torch.where(dmax > dv_max_v, dv_max_v / dmax.clamp(min=1e-300), torch.ones_like(dmax))
            nL, nM = L + scale[:, None] * dL, M + scale * dM
            conv = (scale == 1.0) & ((nL - L).abs() <= reltol * torch.maximum(nL.abs(), L.abs()) + vntol_v).all(1) \
                & ((nM - M).abs() <= reltol * torch.maximum(nM.abs(), M.abs()) + vntol_v)
            Lv[a_], Mv[a_] = nL, nM
            if snk_fixed:
                i_s = flow + scale * dflow_dm * dM
                if lbit:
                    i_s = i_s + scale * (J[2] * dL).sum(1)
                else:
                    i_s = i_s + scale * J[3][:, -1] * dL[:, -1]
                    if R > 1:
                        i_s = i_s + scale * gl * (dL[:, -2] - dL[:, -1])
            else:
                i_s = gk * (nM if lbit else nL[:, -1])
            _settle(a_, i_s, conv, bad, nonfinite, it, i_prev, d_prev, out_i, out_st, out_it, active, reltol, abstol_a)
        cur[q0:q0 + Q], status[q0:q0 + Q], iters[q0:q0 + Q] = out_i, out_st, out_it
    return (cur.view(K, C).cpu().numpy(), iters.view(K, C).cpu().numpy(), status.view(K, C).cpu().numpy())
