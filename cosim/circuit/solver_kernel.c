/*
 * cosim exact array solver kernel (cosim.solver, cosim.solver_kernel).
 *
 * This file is compiled together with device_models/osdi/cosim_devices.c, which is prepended to it
 * (cosim.solver_kernel does the concatenation): the cells' currents come from that file's fet_current,
 * the same function the ngspice decks evaluate through OSDI, with the same .model parameters.
 *
 * Cells (two line nodes a, b; their gates at voltages fixed by the input and the stored state):
 *   KIND_RES    linear gated cell: i = s1 * s2 * (va - vb), s1 = input control (0/1), s2 = conductance (S)
 *   KIND_STACK  8T-SRAM read port: FET (d = a, gate s1) in series with FET (gate s2, s = b), their shared node
 *               solved inside the cell exactly as the compiled cosim_stack device does (same bracketed
 *               Newton, same stopping rule), derivatives by the implicit function theorem
 *   KIND_RERAM  1T-1R: ReRAM (gap s2) from a to an inner node m, access FET (gate s1) from m to b; m solved
 *               inside the cell (ngspice keeps it as a node, with the deck's rshunt to ground: included)
 * Each cell returns ia (current entering at a), ib (current leaving at b) and d(ia, ib)/d(va, vb).
 *
 * cosim_solve_decoupled: Newton on the bit-line and source-line voltages of independent columns
 * (block-tridiagonal 2x2 Jacobian, block Thomas algorithm; a line of zero-ohm wires beside a resistive one:
 * a tridiagonal Jacobian bordered by that line's one node), one POSIX thread per slice of columns; the cells
 * exact, or interpolated from a table of them (celltab_t) where their voltages lie on its grid. Where both
 * lines are resistive (the usual case) a thread solves LANES columns at once (dec_run_lanes: vectors over
 * columns, GCC/clang vector extensions).
 */

enum { KIND_RES = 0, KIND_STACK = 1, KIND_RERAM = 2 };

typedef struct {
    int32_t kind;
    double fet[F_NPARAM];        /* cosim_finfet / cosim_stack model parameters (the .model card) */
    double nfin;
    double re_i0_a, re_g0_m, re_v0_v;
    double g_inner_shunt_s;      /* conductance to ground of the 1T-1R inner node (the deck's rshunt) */
} cellpar_t;

/* What a cell keeps between evaluations: its inner node voltage, the line voltages it was solved at and
   the inner node's derivatives, to predict the next inner voltage to first order (a warm start). */
typedef struct { double m, va, vb, dma, dmb; } cellws_t;

static inline double predict(const cellws_t *w, double va, double vb) {
    return w->m + w->dma * (va - w->va) + w->dmb * (vb - w->vb);
}

/* A Newton step on the inner node below INNER_LAST_STEP_V, and below 1e-3 of the node's distance to both
   line voltages (where one FET's drain-source voltage, the scale its current changes on, is tiny), is
   taken without another evaluation: the current is moved along its derivative, an error of the order of
   (step / scale)^2 < 1e-6 relative. That error only touches iterates far from the solution: a cell's next
   solve starts from this one (predicted), so near convergence its steps, and errors, are of the order of
   the array's last step squared. */
#define INNER_LAST_STEP_V 1e-6
static inline double last_step_v(double m, double va, double vb) {
    const double d = fmin(fabs(m - va), fabs(m - vb)) * 1e-3;
    return d < INNER_LAST_STEP_V ? d : INNER_LAST_STEP_V;
}

/* The 8T read stack: the loop of stack_eval in cosim_devices.c (its start predicted from the last solve; see cellws_t). */
static void stack_cell(const cellpar_t *P, double vg1, double vg2, double Vd, double Vs, cellws_t *w,
                       double *ia, double *ib, double *J) {
    const double *p = P->fet;
    const double nfin = P->nfin;
    double lo = Vd < Vs ? Vd : Vs, hi = Vd < Vs ? Vs : Vd;
    const double mp = predict(w, Vd, Vs);
    double m = (mp > lo && mp < hi) ? mp : ((w->m > lo && w->m < hi) ? w->m : 0.5 * (lo + hi));
    double gd1 = 0, gg1 = 0, gs1 = 0, gd2 = 0, gg2 = 0, gs2 = 0, i1 = 0, i2 = 0;
    for (int it = 0; it < 200; it++) {
        i1 = fet_current(p, nfin, Vd, vg1, m, &gd1, &gg1, &gs1);
        i2 = fet_current(p, nfin, m, vg2, Vs, &gd2, &gg2, &gs2);
        const double f = i1 - i2, fm = gs1 - gd2;
        if (f > 0) lo = m; else hi = m;
        if (fabs(f) <= 1e-13 * (fabs(i1) + fabs(i2)) + 1e-30 || hi - lo <= 1e-15 * (1.0 + fabs(m))) break;
        double next = fm < 0 ? m - f / fm : 0.5 * (lo + hi);
        if (fm < 0 && fabs(next - m) <= last_step_v(next, Vd, Vs) && next > lo && next < hi) {
            i1 += gs1 * (next - m); m = next; break;
        }
        /* a Newton step below the rounding of the node voltages: converged (cosim_stack would bisect the
           bracket down to the same 1e-15 V instead, at the cost of ~40 more evaluations) */
        if (fm < 0 && fabs(next - m) <= 1e-15 * (1.0 + fabs(m))) { if (next > lo && next < hi) m = next; break; }
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        m = next;
    }
    double fm = gs1 - gd2;
    if (fm > -1e-300) fm = -1e-300;
    const double dm_dd = -gd1 / fm, dm_ds = gs2 / fm;
    w->m = m; w->va = Vd; w->vb = Vs; w->dma = dm_dd; w->dmb = dm_ds;
    const double g_d = gd1 + gs1 * dm_dd, g_s = gs1 * dm_ds;
    *ia = i1; *ib = i1;
    J[0] = g_d; J[1] = g_s; J[2] = g_d; J[3] = g_s;
}

/* 1T-1R: f(m) = Ir(va - m) - If(m, vg, vb) - gsh m = 0, decreasing in m, bracketed by min/max(va, vb, 0). */
static void reram_cell(const cellpar_t *P, double vg, double gap, double va, double vb, cellws_t *w,
                       double *ia, double *ib, double *J) {
    const double *p = P->fet;
    const double nfin = P->nfin, v0 = P->re_v0_v, gsh = P->g_inner_shunt_s;
    const double ipre = P->re_i0_a * exp(-gap / P->re_g0_m);
    double lo = va < vb ? va : vb, hi = va < vb ? vb : va;
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    const double mp = predict(w, va, vb);
    double m = (mp > lo && mp < hi) ? mp : ((w->m > lo && w->m < hi) ? w->m : 0.5 * (lo + hi));
    double ir = 0, gr = 0, ifet = 0, gfd = 0, gfg = 0, gfs = 0;
    for (int it = 0; it < 200; it++) {
        const double x = (va - m) / v0;
        ir = ipre * sinh(x);
        gr = ipre * cosh(x) / v0;
        ifet = fet_current(p, nfin, m, vg, vb, &gfd, &gfg, &gfs);
        const double f = ir - ifet - gsh * m, fm = -(gr + gfd + gsh);
        if (f > 0) lo = m; else hi = m;
        if (fabs(f) <= 1e-13 * (fabs(ir) + fabs(ifet)) + 1e-30 || hi - lo <= 1e-15 * (1.0 + fabs(m))) break;
        double next = fm < 0 ? m - f / fm : 0.5 * (lo + hi);
        if (fm < 0 && fabs(next - m) <= last_step_v(next, va, vb) && next > lo && next < hi) {
            ir -= gr * (next - m); ifet += gfd * (next - m); m = next; break;
        }
        /* a Newton step below the rounding of the node voltages: converged (cosim_stack would bisect the
           bracket down to the same 1e-15 V instead, at the cost of ~40 more evaluations) */
        if (fm < 0 && fabs(next - m) <= 1e-15 * (1.0 + fabs(m))) { if (next > lo && next < hi) m = next; break; }
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        m = next;
    }
    double D = gr + gfd + gsh;
    if (D < 1e-300) D = 1e-300;
    const double dm_da = gr / D, dm_db = -gfs / D;
    w->m = m; w->va = va; w->vb = vb; w->dma = dm_da; w->dmb = dm_db;
    *ia = ir; *ib = ifet;
    J[0] = gr * (1.0 - dm_da); J[1] = -gr * dm_db;
    J[2] = gfd * dm_da;        J[3] = gfd * dm_db + gfs;
}

/* One cell: J = [dia/dva, dia/dvb, dib/dva, dib/dvb]. */
static inline void cell_eval(const cellpar_t *P, double s1, double s2, double va, double vb, cellws_t *mw,
                             double *ia, double *ib, double *J) {
    if (P->kind == KIND_STACK) {
        stack_cell(P, s1, s2, va, vb, mw, ia, ib, J);
    } else if (P->kind == KIND_RERAM) {
        reram_cell(P, s1, s2, va, vb, mw, ia, ib, J);
    } else {
        const double g = s1 * s2;
        *ia = *ib = g * (va - vb);
        J[0] = g; J[1] = -g; J[2] = g; J[3] = -g;
    }
}

/* Many cells at once (the coupled topology's Newton in cosim.solver). m: warm starts, in and out. */
void cosim_cells_eval(const cellpar_t *P, int64_t n, const double *s1, const double *s2, const double *va,
                      const double *vb, double *m, double *ia, double *ib, double *J) {
    for (int64_t i = 0; i < n; i++) {
        cellws_t w = {m[i], va[i], vb[i], 0.0, 0.0};
        cell_eval(P, s1[i], s2[i], va[i], vb[i], &w, &ia[i], &ib[i], &J[4 * i]);
        m[i] = w.m;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* A tabulated cell (cosim.solver.cell_table): per state and channel (the current entering at a; for a
   cell whose two currents differ, 1T-1R with its inner node's rshunt, also the current leaving at b), on a
   grid of t = ln(va - vb) and vb, the logarithm of the current and its derivatives d/dt, d/dvb,
   d2/dt dvb from the exact cell, interpolated by bicubic Hermite patches (value and first derivatives
   continuous). ln(current) is nearly linear in t where the cell is ohmic (current ~ va - vb) and in vb
   where it is exponential (subthreshold), so the patches are accurate down to small voltages across the
   cell. Outside the grid (va - vb below its first node, voltages beyond its range) the exact cell is
   evaluated. */
typedef struct {
    int32_t nx, ny;              /* grid nodes along t and vb */
    int32_t nch;                 /* channels: 1 (ia = ib) or 2 (ia, ib) */
    double x0, dx, y0, dy;       /* t = ln(va - vb) = x0 + i dx (ln V), vb = y0 + j dy (V) */
    const double *c;             /* (nch, 4 states, nx, ny, 4): g, dg/dt, dg/dvb, d2g/dt dvb of g = ln(current) */
} celltab_t;

/* Where a cell's point lies in the table: the first node's offset into c (state included), the position
   in its patch, va - vb. table_locate prefetches the patch's nodes, so that a column's cells can be located
   in one pass and interpolated in a second one while their table memory arrives. */
typedef struct { int64_t off; double u, v, uv; } tabloc_t;

/* inlined into the column loops (a call returns its results through memory, and waits on it) */
#if defined(__GNUC__) || defined(__clang__)
#define TABLE_INLINE static inline __attribute__((always_inline))
#else
#define TABLE_INLINE static inline
#endif

TABLE_INLINE int table_locate(const celltab_t *T, int st, double va, double vb, tabloc_t *L) {
    const double uv = va - vb;
    if (!(uv > 0.0)) return 0;
    const double tx = (log(uv) - T->x0) / T->dx, ty = (vb - T->y0) / T->dy;
    if (!(tx >= 0.0 && ty >= 0.0 && tx < T->nx - 1 && ty < T->ny - 1)) return 0;
    const int i = (int)tx, j = (int)ty;
    L->off = (((int64_t)st * T->nx + i) * T->ny + j) * 4;
    L->u = tx - i; L->v = ty - j; L->uv = uv;
    for (int ch = 0; ch < T->nch; ch++) {
        const double *q = T->c + L->off + (int64_t)ch * 4 * T->nx * T->ny * 4;
        __builtin_prefetch(q); __builtin_prefetch(q + 7);
        __builtin_prefetch(q + T->ny * 4); __builtin_prefetch(q + T->ny * 4 + 7);
    }
    return 1;
}

/* The cell's currents and J = [dia/dva, dia/dvb, dib/dva, dib/dvb] at a located point. */
TABLE_INLINE void table_interp(const celltab_t *T, const tabloc_t *L, double *ia, double *ib, double *J) {
    const double u = L->u, v = L->v, uv = L->uv;
    const double u2 = u * u, u3 = u2 * u, v2 = v * v, v3 = v2 * v;
    const double hu[2] = {2 * u3 - 3 * u2 + 1, -2 * u3 + 3 * u2}, ku[2] = {u3 - 2 * u2 + u, u3 - u2};
    const double hv[2] = {2 * v3 - 3 * v2 + 1, -2 * v3 + 3 * v2}, kv[2] = {v3 - 2 * v2 + v, v3 - v2};
    const double dhu[2] = {6 * u2 - 6 * u, -6 * u2 + 6 * u}, dku[2] = {3 * u2 - 4 * u + 1, 3 * u2 - 2 * u};
    const double dhv[2] = {6 * v2 - 6 * v, -6 * v2 + 6 * v}, dkv[2] = {3 * v2 - 4 * v + 1, 3 * v2 - 2 * v};
    const double dx = T->dx, dy = T->dy, rdxu = 1.0 / (dx * uv), rdy = 1.0 / dy;
    for (int ch = 0; ch < T->nch; ch++) {
        double F = 0, FX = 0, FY = 0;
        for (int a = 0; a < 2; a++) {
            for (int b = 0; b < 2; b++) {
                const double *q = T->c + L->off + (int64_t)ch * 4 * T->nx * T->ny * 4 + ((int64_t)a * T->ny + b) * 4;
                const double fu = hu[a] * q[0] + dx * ku[a] * q[1], fdu = dhu[a] * q[0] + dx * dku[a] * q[1];
                const double gu = hu[a] * q[2] + dx * ku[a] * q[3], gdu = dhu[a] * q[2] + dx * dku[a] * q[3];
                F += hv[b] * fu + dy * kv[b] * gu;
                FX += hv[b] * fdu + dy * kv[b] * gdu;
                FY += dhv[b] * fu + dy * dkv[b] * gu;
            }
        }
        /* i = exp(g(t, vb)): di/dva = i g_t / (va - vb), di/dvb = i (g_vb - g_t / (va - vb)) */
        const double e = exp(F), gt = FX * rdxu, gy = FY * rdy;
        if (ch == 0) { *ia = e; J[0] = e * gt; J[1] = e * (gy - gt); }
        else { *ib = e; J[2] = e * gt; J[3] = e * (gy - gt); }
    }
    if (T->nch == 1) { *ib = *ia; J[2] = J[0]; J[3] = J[1]; }
}

/* Both at once; 0 where (va, vb) is off the grid (nothing written). */
static inline int table_cell(const celltab_t *T, int st, double va, double vb, double *ia, double *ib, double *J) {
    tabloc_t L;
    if (!table_locate(T, st, va, vb, &L)) return 0;
    table_interp(T, &L, ia, ib, J);
    return 1;
}

/* The table at many points (for its validation): J (n, 4) as cell_eval's; inside[i] 0 where (va, vb) is
   off the grid. */
void cosim_table_eval(const celltab_t *T, int64_t n, const int32_t *st, const double *va, const double *vb,
                      double *ia, double *ib, double *J, int32_t *inside) {
    for (int64_t i = 0; i < n; i++) inside[i] = table_cell(T, st[i], va[i], vb[i], &ia[i], &ib[i], &J[4 * i]);
}

typedef struct {
    const cellpar_t *P;
    int64_t K, C, R;
    const uint8_t *x;            /* (K, R) inputs */
    const uint8_t *wt;           /* (C, R) weights, transposed */
    double state[4][2];          /* cell state (s1, s2) for [2 * input + weight] */
    double v_read_v;
    double g_bl_s, g_sl_s;       /* wire segment conductances of the bit and source lines; 0: zero-ohm wires,
                                    the line one node (dec_run_mixed where only one is) */
    double g_driver_s;           /* 0 with driver_fixed: zero-ohm driver, the top of the bit line held at v_read */
    double g_sink_s;             /* conductance from the sense node to ground (sink and its node's shunt) */
    int32_t driver_fixed, sink_fixed;
    double g_shunt_s;            /* conductance to ground of every line node (the deck's rshunt) */
    int32_t max_iter;
    double reltol, vntol_v, abstol_a, dv_max_v;
    const int64_t *kidx, *cidx;  /* NULL: every column k * C + c; else the columns (kidx[q], cidx[q]), q < npairs */
    int64_t npairs;
    int64_t j0, j1;              /* this thread's columns: flat index k * C + c, or the pair index */
    double *i_out;               /* (K, C) or (npairs,) sensed current (A) */
    int32_t *status;             /* (K, C) 0 converged, 1 iteration limit, 2 non-finite, 3 singular */
    int32_t *iters;              /* (K, C) Newton iterations */
    const celltab_t *table;      /* NULL: exact cells; else the tabulated cells (exact outside the grid) */
    int32_t lanes;               /* 1: columns with both lines resistive in lanes (dec_run_lanes); 0: one by one */
} dec_job_t;

/* A column whose bit line or source line (not both) has zero-ohm wires: that line is one node M, the other
   line R nodes L. The Jacobian is tridiagonal in L, bordered by M's row and column: the Thomas algorithm on
   two right-hand sides (-F_L and M's column u), then M's step from the Schur complement,
   dM = (-F_M - v.y) / (a - v.z), and dL = y - z dM. The same cells, stopping rules and sensed current as
   dec_run's. */
/* The shared convergence test of the decoupled column solves: the sensed current settled, its last change
   within tolerance, or (quadratic convergence) the error it leaves, about change^2 / previous change, 100x
   below the tolerance; ``conv``: the line voltages converged too. Updates the previous current and change. */
static int sense_settled(double i_sense, double *i_prev, double *d_prev, int conv, double reltol, double abstol_a) {
    if (isfinite(*i_prev)) {
        const double d = fabs(i_sense - *i_prev), tol = reltol * fabs(i_sense) + abstol_a;
        if (conv && (d <= tol || (d < *d_prev && d * d <= 0.01 * tol * *d_prev))) return 1;
        *d_prev = d;
    }
    *i_prev = i_sense;
    return 0;
}

static void *dec_run_mixed(dec_job_t *j) {
    const cellpar_t *P = j->P;
    const int64_t R = j->R, C = j->C;
    const int lbit = j->g_bl_s != 0.0;   /* L is the bit line (the source line is merged), else the source line */
    const double gl = lbit ? j->g_bl_s : j->g_sl_s, gsh = j->g_shunt_s, vr = j->v_read_v;
    /* M held by a zero-ohm periphery: the merged source line at a zero-ohm sink, or bit line at a zero-ohm driver */
    const int m_fixed = lbit ? j->sink_fixed : j->driver_fixed;
    const double m_value = lbit ? 0.0 : vr;
    /* L's row held by a zero-ohm periphery: the bit line's row 0 at the driver, the source line's row R-1 at the sink */
    const int l_fixed = lbit ? j->driver_fixed : j->sink_fixed;
    const int64_t lr = lbit ? 0 : R - 1;
    const double l_value = lbit ? vr : 0.0;
    const celltab_t *tab = j->table;
    double *buf = malloc(sizeof(double) * (size_t)(R * 13) + sizeof(cellws_t) * (size_t)R
                         + sizeof(int) * (size_t)R + 64);
    if (!buf) {
        for (int64_t q = j->j0; q < j->j1; q++) { j->status[q] = 4; j->i_out[q] = NAN; }
        return NULL;
    }
    double *s1a = buf, *s2a = buf + R, *L = buf + 2 * R, *sub = buf + 3 * R, *dia = buf + 4 * R;
    double *sup = buf + 5 * R, *u = buf + 6 * R, *v = buf + 7 * R, *f = buf + 8 * R, *y = buf + 9 * R;
    double *z = buf + 10 * R, *cq = buf + 11 * R, *j2 = buf + 12 * R;
    cellws_t *ws = (cellws_t *)(buf + 13 * R);
    int *sta = (int *)(ws + R);
    cellws_t ws0[4];
    for (int st = 0; st < 4; st++) {
        double ia, ib, Jc[4];
        ws0[st].m = NAN; ws0[st].va = ws0[st].vb = ws0[st].dma = ws0[st].dmb = 0.0;
        cell_eval(P, j->state[st][0], j->state[st][1], vr, 0.0, &ws0[st], &ia, &ib, Jc);
    }
    for (int64_t q = j->j0; q < j->j1; q++) {
        const int64_t k = j->kidx ? j->kidx[q] : q / C, c = j->cidx ? j->cidx[q] : q % C;
        const uint8_t *xr = j->x + k * R, *wr = j->wt + c * R;
        for (int64_t r = 0; r < R; r++) {
            const int st = 2 * (xr[r] != 0) + (wr[r] != 0);
            s1a[r] = j->state[st][0]; s2a[r] = j->state[st][1]; sta[r] = st;
            ws[r] = ws0[st];
        }
        for (int64_t n = 0; n < R; n++) L[n] = lbit ? vr : 0.0;
        double M = lbit ? 0.0 : vr;
        int status = 1, it;
        double i_sense = 0.0, i_prev = NAN, d_prev = INFINITY;
        for (it = 1; it <= j->max_iter; it++) {
            double fM = gsh * M, a = gsh;
            for (int64_t n = 0; n < R; n++) {
                f[n] = gsh * L[n]; dia[n] = gsh;
                sub[n] = n > 0 ? -gl : 0.0; sup[n] = n < R - 1 ? -gl : 0.0;
                if (n > 0) { f[n] += gl * (L[n] - L[n - 1]); dia[n] += gl; }
                if (n < R - 1) { f[n] += gl * (L[n] - L[n + 1]); dia[n] += gl; }
            }
            if (lbit) {
                if (!j->driver_fixed) { f[0] += j->g_driver_s * (L[0] - vr); dia[0] += j->g_driver_s; }
                if (!j->sink_fixed) { fM += j->g_sink_s * M; a += j->g_sink_s; }
            } else {
                if (!j->driver_fixed) { fM += j->g_driver_s * (M - vr); a += j->g_driver_s; }
                if (!j->sink_fixed) { f[R - 1] += j->g_sink_s * L[R - 1]; dia[R - 1] += j->g_sink_s; }
            }
            /* the flow into a zero-ohm sink before this step and its derivatives (d/dM; d/dL per row or the
               last row's) */
            double flow = 0.0, dflow_dm = 0.0, dflow_dl = 0.0;
            for (int64_t r = 0; r < R; r++) {
                const double va = lbit ? L[r] : M, vb = lbit ? M : L[r];
                double ia, ib, Jc[4];
                if (!(tab && table_cell(tab, sta[r], va, vb, &ia, &ib, Jc)))
                    cell_eval(P, s1a[r], s2a[r], va, vb, &ws[r], &ia, &ib, Jc);
                if (lbit) {
                    f[r] += ia; dia[r] += Jc[0]; u[r] = Jc[1];
                    fM -= ib; a -= Jc[3]; v[r] = -Jc[2];
                    flow += ib; j2[r] = Jc[2]; dflow_dm += Jc[3];
                } else {
                    f[r] -= ib; dia[r] -= Jc[3]; u[r] = -Jc[2];
                    fM += ia; a += Jc[0]; v[r] = Jc[1];
                    if (r == R - 1) { flow = ib; dflow_dm = Jc[2]; dflow_dl = Jc[3]; }
                }
            }
            if (!lbit && R > 1) flow += gl * (L[R - 2] - L[R - 1]);
            /* Dirichlet rows */
            if (m_fixed) {
                fM = M - m_value; a = 1.0;
                for (int64_t n = 0; n < R; n++) v[n] = 0.0;
            }
            if (l_fixed) { f[lr] = L[lr] - l_value; dia[lr] = 1.0; sub[lr] = 0.0; sup[lr] = 0.0; u[lr] = 0.0; }
            /* T y = -F_L, T z = u (Thomas), then the border */
            int bad = 0;
            for (int64_t n = 0; n < R; n++) {
                double m = dia[n], ry = -f[n], rz = u[n];
                if (n > 0) { m -= sub[n] * cq[n - 1]; ry -= sub[n] * y[n - 1]; rz -= sub[n] * z[n - 1]; }
                if (!(fabs(m) > 1e-300) || !isfinite(m)) { bad = 1; break; }
                cq[n] = sup[n] / m; y[n] = ry / m; z[n] = rz / m;
            }
            if (bad) { status = 3; break; }
            for (int64_t n = R - 2; n >= 0; n--) { y[n] -= cq[n] * y[n + 1]; z[n] -= cq[n] * z[n + 1]; }
            double vy = 0.0, vz = 0.0;
            for (int64_t n = 0; n < R; n++) { vy += v[n] * y[n]; vz += v[n] * z[n]; }
            const double den = a - vz;
            if (!(fabs(den) > 1e-300) || !isfinite(den)) { status = 3; break; }
            const double dM = (-fM - vy) / den;
            double dmax = fabs(dM);
            for (int64_t n = 0; n < R; n++) {
                y[n] -= z[n] * dM;
                if (fabs(y[n]) > dmax) dmax = fabs(y[n]);
            }
            if (!isfinite(dmax)) { status = 2; break; }
            const double scale = dmax > j->dv_max_v ? j->dv_max_v / dmax : 1.0;
            int conv = scale == 1.0;
            for (int64_t n = 0; n < R; n++) {
                const double nl = L[n] + scale * y[n];
                if (conv && fabs(nl - L[n]) > j->reltol * fmax(fabs(nl), fabs(L[n])) + j->vntol_v) conv = 0;
                L[n] = nl;
            }
            const double nM = M + scale * dM;
            if (conv && fabs(nM - M) > j->reltol * fmax(fabs(nM), fabs(M)) + j->vntol_v) conv = 0;
            M = nM;
            /* sensed current after the step (first order in the step for a zero-ohm sink, as dec_run) */
            if (j->sink_fixed) {
                i_sense = flow + scale * dflow_dm * dM;
                if (lbit) {
                    for (int64_t r = 0; r < R; r++) i_sense += scale * j2[r] * y[r];
                } else {
                    i_sense += scale * dflow_dl * y[R - 1];
                    if (R > 1) i_sense += scale * gl * (y[R - 2] - y[R - 1]);
                }
            } else {
                i_sense = j->g_sink_s * (lbit ? M : L[R - 1]);
            }
            if (!isfinite(i_sense)) { status = 2; break; }
            if (sense_settled(i_sense, &i_prev, &d_prev, conv, j->reltol, j->abstol_a)) { status = 0; break; }
        }
        j->i_out[q] = status == 0 ? i_sense : NAN;
        j->status[q] = status;
        j->iters[q] = it > j->max_iter ? j->max_iter : it;
    }
    free(buf);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Columns in lanes: LANES columns of the general case (both lines resistive) solved side by side, their
   per-row values stored lane by lane (structure of arrays), so that the wires, the block-Thomas elimination,
   the back substitution, the update, the convergence test and the tabulated cells of a row run as vector
   operations over the lanes. Each lane runs dec_run's iteration on its own column (the same sums in the same
   order; e^x and ln x of the tabulated cells by vexp and vlog; a column's result does not depend on its lane,
   its neighbours or the threads); a lane whose column has finished takes the next column of the thread's
   slice. The first iteration's cells are all at the ideal bias (v_read across, the source line at 0 V), so
   their currents and derivatives are taken per state from values computed once; that first step differs
   from dec_run's (the cell's chord where it is the smaller conductance, the step shortened where it would
   leave a cell off the table's grid: dec_run_lanes), which moves the converged currents by ~1e-11 relative
   at most (docs/benchmarks/solver.md). */
/* as many lanes as the target's vector registers hold doubles (the build uses -march=native where the compiler
   takes it: cosim/circuit/solver_kernel.py), so that a lane vector is one register: a wider one would be split
   and in part spilled by the compiler (measured 6x slower) */
#if defined(__AVX512F__)
#define LANES 8
#elif defined(__AVX__)
#define LANES 4
#else
#define LANES 2
#endif

/* the lanes as one vector (GCC and clang vector extensions; the compiler splits it into the vector
   registers the target has, or scalars), and its masks (all bits set where true) */
typedef double vd __attribute__((vector_size(8 * LANES)));
typedef int64_t vl __attribute__((vector_size(8 * LANES)));
#define VD(p) (*(vd *)(p))
/* the lanes' helpers are always inlined: a vector wider than the target's registers would otherwise be passed
   through memory */
#define LANE_INLINE TABLE_INLINE
static const vd vzero = {0};
static const vl vzero_l = {0};
LANE_INLINE vd vsel(vl m, vd a, vd b) { return (vd)((m & (vl)a) | (~m & (vl)b)); }
LANE_INLINE vd vabs(vd a) { return (vd)((vl)a & (vzero_l + INT64_MAX)); }
/* fmax of each lane (the other operand where one is NaN) */
LANE_INLINE vd vfmax(vd a, vd b) { return vsel((a > b) | (b != b), a, b); }

typedef struct { double ia, ib, J[4]; cellws_t ws; } cellstart_t;

/* ln x of each lane (x > 0, normal): x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m - 1) / (m + 1)
   (|s| < 0.172), the series to s^23 (truncation below 1e-18 relative); within a few units in the last place
   of libm's log. */
LANE_INLINE vd vlog(vd x) {
    const vl bits = (vl)x;
    vl e = ((bits >> 52) & 0x7ff) - 1023;
    vd m = (vd)((bits & 0xfffffffffffffLL) | (vzero_l + 0x3ff0000000000000LL));
    const vl big = m > 1.4142135623730951;
    m = vsel(big, m * 0.5, m);
    e -= big;                                      /* big is -1 where true */
    const vd s = (m - 1.0) / (m + 1.0), s2 = s * s;
    vd p = vzero + 2.0 / 23;
    p = p * s2 + 2.0 / 21; p = p * s2 + 2.0 / 19; p = p * s2 + 2.0 / 17; p = p * s2 + 2.0 / 15;
    p = p * s2 + 2.0 / 13; p = p * s2 + 2.0 / 11; p = p * s2 + 2.0 / 9; p = p * s2 + 2.0 / 7;
    p = p * s2 + 2.0 / 5; p = p * s2 + 2.0 / 3; p = p * s2 + 2.0;
    const vd ef = __builtin_convertvector(e, vd);
    return ef * 6.93147180369123816490e-01 + (s * p + ef * 1.90821492927058770002e-10);
}

/* The lanes' tabulated cells of row r located as table_locate does (its arithmetic, ln by vlog), into
   structure-of-arrays fields (patch offset, position in the patch, va - vb), their table memory fetched;
   inloc 0 (and safe values) where the cell is off the grid or not to be looked up (want: the lanes in their
   second or later iteration). Rows are located this far ahead of their evaluation: the fetched patches of
   a few rows stay in the first-level cache. */
#define LOCATE_AHEAD 4
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
LANE_INLINE void locate_row(const celltab_t *T, int64_t r, vl want, const int *sta, const double *vb,
                             const double *vs, int64_t *loff, double *lu, double *lv, double *luv, int *inloc) {
    const int64_t o = r * LANES;
    const vd uv = VD(vb + o) - VD(vs + o);
    const vl pos = uv > 0.0;
    const vd tx = (vlog(vsel(pos, uv, vzero + 1.0)) - T->x0) / T->dx, ty = (VD(vs + o) - T->y0) / T->dy;
    const vl ok = want & pos & (tx >= 0.0) & (ty >= 0.0) & (tx < (double)(T->nx - 1)) & (ty < (double)(T->ny - 1));
    const vl i = __builtin_convertvector(vsel(ok, tx, vzero), vl), jj = __builtin_convertvector(vsel(ok, ty, vzero), vl);
    const vl st = __builtin_convertvector(*(const vi *)(sta + o), vl);
    const vl off = ok & (((st * T->nx + i) * T->ny + jj) * 4);
    *(vl *)(loff + o) = off;
    VD(lu + o) = vsel(ok, tx - __builtin_convertvector(i, vd), vzero);
    VD(lv + o) = vsel(ok, ty - __builtin_convertvector(jj, vd), vzero);
    VD(luv + o) = vsel(ok, uv, vzero + 1.0);
    *(vi *)(inloc + o) = __builtin_convertvector(ok, vi) & 1;
    for (int l = 0; l < LANES; l++) {
        if (!ok[l]) continue;
        for (int ch = 0; ch < T->nch; ch++) {
            const double *q = T->c + off[l] + (int64_t)ch * 4 * T->nx * T->ny * 4;
            __builtin_prefetch(q); __builtin_prefetch(q + 7);
            __builtin_prefetch(q + T->ny * 4); __builtin_prefetch(q + T->ny * 4 + 7);
        }
    }
}

/* e^x of each lane for the tabulated cells' ln(current) (|x| < 700): x = k ln 2 + r, |r| <= ln(2)/2, e^r by
   its Taylor polynomial to degree 13 (truncation below 2e-17 relative), 2^k put into the exponent bits;
   within a few units in the last place of libm's exp. */
LANE_INLINE vd vexp(vd x) {
    const vd kf = x * 1.4426950408889634 + 6755399441055744.0 - 6755399441055744.0;   /* round(x / ln 2) */
    const vd r = (x - kf * 6.93147180369123816490e-01) - kf * 1.90821492927058770002e-10;
    vd p = vzero + 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0; p = p * r + 1.0 / 39916800.0; p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0; p = p * r + 1.0 / 40320.0; p = p * r + 1.0 / 5040.0; p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0; p = p * r + 1.0 / 24.0; p = p * r + 1.0 / 6.0; p = p * r + 0.5;
    p = p * r + 1.0; p = p * r + 1.0;
    vl k;
    for (int l = 0; l < LANES; l++) k[l] = (int64_t)kf[l];
    return (vd)((vl)p + (k << 52));
}

/* table_interp of a row's lanes at once, as locate_row left them (the lanes not located get finite values
   of the table's first patch, which the caller replaces): the same sums as table_interp's, e^x by vexp. */
LANE_INLINE void table_interp_lanes(const celltab_t *T, const int64_t *loff, const double *lu, const double *lv,
                                       const double *luv, vd *ia, vd *ib, vd *J0, vd *J1, vd *J2, vd *J3) {
    const vl off = *(const vl *)loff;
    const vd u = VD(lu), v = VD(lv), uv = VD(luv);
    const vd u2 = u * u, u3 = u2 * u, v2 = v * v, v3 = v2 * v;
    const vd hu[2] = {2 * u3 - 3 * u2 + 1, -2 * u3 + 3 * u2}, ku[2] = {u3 - 2 * u2 + u, u3 - u2};
    const vd hv[2] = {2 * v3 - 3 * v2 + 1, -2 * v3 + 3 * v2}, kv[2] = {v3 - 2 * v2 + v, v3 - v2};
    const vd dhu[2] = {6 * u2 - 6 * u, -6 * u2 + 6 * u}, dku[2] = {3 * u2 - 4 * u + 1, 3 * u2 - 2 * u};
    const vd dhv[2] = {6 * v2 - 6 * v, -6 * v2 + 6 * v}, dkv[2] = {3 * v2 - 4 * v + 1, 3 * v2 - 2 * v};
    const double dx = T->dx, dy = T->dy, rdy = 1.0 / dy;
    const vd rdxu = 1.0 / (dx * uv);
    for (int ch = 0; ch < T->nch; ch++) {
        vd F = vzero, FX = vzero, FY = vzero;
        const double *base = T->c + (int64_t)ch * 4 * T->nx * T->ny * 4;
        for (int a = 0; a < 2; a++) {
            for (int b = 0; b < 2; b++) {
                const int64_t d = ((int64_t)a * T->ny + b) * 4;
                /* each lane's four values (built in registers: a vector stored lane by lane and read back
                   whole would wait on the store) */
#if LANES == 8
                const double *p0 = base + off[0] + d, *p1 = base + off[1] + d, *p2 = base + off[2] + d;
                const double *p3 = base + off[3] + d, *p4 = base + off[4] + d, *p5 = base + off[5] + d;
                const double *p6 = base + off[6] + d, *p7 = base + off[7] + d;
#define LANE_GATHER(k) (vd){p0[k], p1[k], p2[k], p3[k], p4[k], p5[k], p6[k], p7[k]}
#elif LANES == 4
                const double *p0 = base + off[0] + d, *p1 = base + off[1] + d, *p2 = base + off[2] + d;
                const double *p3 = base + off[3] + d;
#define LANE_GATHER(k) (vd){p0[k], p1[k], p2[k], p3[k]}
#else
                const double *p0 = base + off[0] + d, *p1 = base + off[1] + d;
#define LANE_GATHER(k) (vd){p0[k], p1[k]}
#endif
                const vd q0 = LANE_GATHER(0), q1 = LANE_GATHER(1), q2 = LANE_GATHER(2), q3 = LANE_GATHER(3);
#undef LANE_GATHER
                const vd fu = hu[a] * q0 + dx * ku[a] * q1, fdu = dhu[a] * q0 + dx * dku[a] * q1;
                const vd gu = hu[a] * q2 + dx * ku[a] * q3, gdu = dhu[a] * q2 + dx * dku[a] * q3;
                F += hv[b] * fu + dy * kv[b] * gu;
                FX += hv[b] * fdu + dy * kv[b] * gdu;
                FY += dhv[b] * fu + dy * dkv[b] * gu;
            }
        }
        const vd e = vexp(F), gt = FX * rdxu, gy = FY * rdy;
        if (ch == 0) { *ia = e; *J0 = e * gt; *J1 = e * (gy - gt); }
        else { *ib = e; *J2 = e * gt; *J3 = e * (gy - gt); }
    }
    if (T->nch == 1) { *ib = *ia; *J2 = *J0; *J3 = *J1; }
}

static void *dec_run_lanes(dec_job_t *j) {
    const cellpar_t *P = j->P;
    const int64_t R = j->R, C = j->C, N = R;
    const double gb = j->g_bl_s, gs = j->g_sl_s, gsh = j->g_shunt_s, vr = j->v_read_v;
    const double gdrv = j->driver_fixed ? 0.0 : j->g_driver_s, gsnk = j->sink_fixed ? 0.0 : j->g_sink_s;
    const celltab_t *tab = j->table;
    const double u_floor = tab ? 2.0 * exp(tab->x0) : 0.0;   /* twice the least voltage across a cell on the grid */
    const size_t nl = (size_t)R * LANES;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, nl * (sizeof(double) * 8 + sizeof(cellws_t) + 4 * sizeof(double) + 2 * sizeof(int))) != 0)
        mem = NULL;
    if (!mem) {
        for (int64_t q = j->j0; q < j->j1; q++) { j->status[q] = 4; j->i_out[q] = NAN; }
        return NULL;
    }
    double *vb = mem, *vs = vb + nl, *c0 = vs + nl, *c1 = c0 + nl, *c2 = c1 + nl, *c3 = c2 + nl;
    double *db = c3 + nl, *ds = db + nl;
    cellws_t *ws = (cellws_t *)(ds + nl);
    int64_t *loff = (int64_t *)(ws + nl);
    double *lu = (double *)(loff + nl), *lv = lu + nl, *luv = lv + nl;
    int *inloc = (int *)(luv + nl), *sta = inloc + nl;
    /* each state's cell at the ideal bias: the inner node's first guess, and the first iteration's values */
    cellstart_t cs[4];
    for (int st = 0; st < 4; st++) {
        double ia, ib, Jc[4];
        cellws_t w0 = {NAN, 0.0, 0.0, 0.0, 0.0};
        cell_eval(P, j->state[st][0], j->state[st][1], vr, 0.0, &w0, &ia, &ib, Jc);
        cs[st].ws = w0;
        if (!(tab && table_cell(tab, st, vr, 0.0, &cs[st].ia, &cs[st].ib, cs[st].J)))
            cell_eval(P, j->state[st][0], j->state[st][1], vr, 0.0, &cs[st].ws, &cs[st].ia, &cs[st].ib, cs[st].J);
        /* the first step's linear model of the cell: its tangent at the ideal bias, or its chord through 0 V
           where that is the smaller conductance (a cell whose current grows faster than its voltage there,
           1T-1R: from the chord, Newton needs one iteration fewer at 10-20 ohm; docs/benchmarks/solver.md) */
        const double g_chord = cs[st].ia / vr;
        if (g_chord > 0.0 && g_chord < cs[st].J[0]) {
            cs[st].J[0] = g_chord; cs[st].J[1] = -g_chord; cs[st].J[2] = cs[st].ib / vr; cs[st].J[3] = -cs[st].ib / vr;
        }
    }
    int64_t lq[LANES], next = j->j0;
    int lit[LANES];
    double i_prev[LANES], d_prev[LANES], i_sense[LANES];
    for (int l = 0; l < LANES; l++) lq[l] = -1;
    for (size_t i = 0; i < nl; i++) { vb[i] = vr; vs[i] = 0.0; sta[i] = 0; inloc[i] = 0; }
    for (;;) {
        int nact = 0;
        for (int l = 0; l < LANES; l++) {
            if (lq[l] < 0 && next < j->j1) {
                const int64_t q = next++;
                const int64_t k = j->kidx ? j->kidx[q] : q / C, c = j->cidx ? j->cidx[q] : q % C;
                const uint8_t *xr = j->x + k * R, *wr = j->wt + c * R;
                for (int64_t r = 0; r < R; r++) {
                    const int st = 2 * (xr[r] != 0) + (wr[r] != 0);
                    sta[r * LANES + l] = st;
                    ws[r * LANES + l] = cs[st].ws;
                    vb[r * LANES + l] = vr; vs[r * LANES + l] = 0.0;
                }
                lq[l] = q; lit[l] = 0; i_prev[l] = NAN; d_prev[l] = INFINITY; i_sense[l] = 0.0;
            }
            if (lq[l] >= 0) { nact++; lit[l]++; }
        }
        if (!nact) break;
        /* tabulated cells: located (their table memory fetched) LOCATE_AHEAD rows before they are evaluated */
        vl want;
        for (int l = 0; l < LANES; l++) want[l] = lq[l] >= 0 && lit[l] > 1 ? -1 : 0;
        for (int64_t r = 0; tab && r < LOCATE_AHEAD && r < R; r++) locate_row(tab, r, want, sta, vb, vs, loff, lu, lv, luv, inloc);
        vl bad = vzero_l;
        vd ibl = vzero, jb2 = vzero, jb3 = vzero;
        for (int64_t n = 0; n < N; n++) {
            vd ia = vzero, ib = vzero, j0 = vzero, j1 = vzero, j2 = vzero, j3 = vzero;
            if (tab && n + LOCATE_AHEAD < R) locate_row(tab, n + LOCATE_AHEAD, want, sta, vb, vs, loff, lu, lv, luv, inloc);
            int ntab = 0;
            for (int l = 0; tab && l < LANES; l++) ntab += inloc[n * LANES + l];
            if (ntab) table_interp_lanes(tab, loff + n * LANES, lu + n * LANES, lv + n * LANES, luv + n * LANES,
                                         &ia, &ib, &j0, &j1, &j2, &j3);
            for (int l = 0; l < LANES; l++) {
                const int64_t i = n * LANES + l;
                double Jc[4], ca, cb;
                if (tab && inloc[i]) continue;
                if (lq[l] < 0) { ca = cb = 0.0; Jc[0] = Jc[1] = Jc[2] = Jc[3] = 0.0; }
                else if (lit[l] == 1) {
                    const cellstart_t *s = &cs[sta[i]];
                    ca = s->ia; cb = s->ib; Jc[0] = s->J[0]; Jc[1] = s->J[1]; Jc[2] = s->J[2]; Jc[3] = s->J[3];
                } else cell_eval(P, j->state[sta[i]][0], j->state[sta[i]][1], vb[i], vs[i], &ws[i], &ca, &cb, Jc);
                ia[l] = ca; ib[l] = cb; j0[l] = Jc[0]; j1[l] = Jc[1]; j2[l] = Jc[2]; j3[l] = Jc[3];
            }
            /* the row's wires and cell, then its block-Thomas elimination: dec_run's sums in its order (a wire
               that is not there adds an exact 0), over the lanes at once */
            const vd vbc = VD(vb + n * LANES), vsc = VD(vs + n * LANES);
            const vd vbp = n > 0 ? VD(vb + (n - 1) * LANES) : vbc, vsp = n > 0 ? VD(vs + (n - 1) * LANES) : vsc;
            const vd vbn = n < N - 1 ? VD(vb + (n + 1) * LANES) : vbc, vsn = n < N - 1 ? VD(vs + (n + 1) * LANES) : vsc;
            const double gbu = n > 0 ? gb : 0.0, gsu = n > 0 ? gs : 0.0, gbd = n < N - 1 ? gb : 0.0, gsd = n < N - 1 ? gs : 0.0;
            const double gd = n == 0 ? gdrv : 0.0, gk = n == N - 1 ? gsnk : 0.0;
            vd fb = gsh * vbc, fs = gsh * vsc;
            vd a00 = vzero + gsh, a11 = vzero + gsh;
            fb += gbu * (vbc - vbp); fs += gsu * (vsc - vsp); a00 += gbu; a11 += gsu;
            fb += gbd * (vbc - vbn); fs += gsd * (vsc - vsn); a00 += gbd; a11 += gsd;
            fb += gd * (vbc - vr); a00 += gd;
            fs += gk * vsc; a11 += gk;
            fb += ia; fs -= ib;
            vd a0 = a00 + j0, a1 = 0.0 + j1, a2 = 0.0 - j2, a3 = a11 - j3;
            double lb = n > 0 ? -gb : 0.0, ls = n > 0 ? -gs : 0.0, ub = n < N - 1 ? -gb : 0.0, us = n < N - 1 ? -gs : 0.0;
            if (n == N - 1) { ibl += ib; jb2 += j2; jb3 += j3; }
            if (n == 0 && j->driver_fixed) { fb = vbc - vr; a0 = vzero + 1.0; a1 = vzero; ub = 0.0; }
            if (n == N - 1 && j->sink_fixed) { fs = vsc; a2 = vzero; a3 = vzero + 1.0; ls = 0.0; }
            vd r0 = -fb, r1 = -fs;
            if (n > 0) {   /* M = A - L C'_{n-1}; r -= L d_{n-1} */
                const int64_t o = (n - 1) * LANES;
                a0 -= lb * VD(c0 + o); a1 -= lb * VD(c1 + o);
                a2 -= ls * VD(c2 + o); a3 -= ls * VD(c3 + o);
                r0 -= lb * VD(db + o); r1 -= ls * VD(ds + o);
            }
            const vd det = a0 * a3 - a1 * a2;
            bad |= ~(vabs(det) > 1e-300) | ~(det - det == 0.0);
            const vd rdet = 1.0 / det;
            const vd i0 = a3 * rdet, i1 = -a1 * rdet, i2 = -a2 * rdet, i3 = a0 * rdet;
            const int64_t o = n * LANES;
            VD(c0 + o) = i0 * ub; VD(c1 + o) = i1 * us; VD(c2 + o) = i2 * ub; VD(c3 + o) = i3 * us;
            VD(db + o) = i0 * r0 + i1 * r1; VD(ds + o) = i2 * r0 + i3 * r1;
        }
        /* the sink-side flow into a fixed sink node, before this step */
        vd flow = ibl, dfb = vzero, dfs = vzero;
        if (j->sink_fixed) {
            dfb = jb2; dfs = jb3;
            if (N > 1) flow += gs * (VD(vs + (N - 2) * LANES) - VD(vs + (N - 1) * LANES));
        }
        /* a lane's first step is shortened where it would leave a cell with less than u_floor across it
           (the full linear step overshoots the IR drop of long columns far below 0 V across the far cells,
           off the table's grid, where the exact cells cost ~20x more): lim, the largest fraction of the step
           that keeps every cell at u_floor or above. Later steps are Newton's own. */
        vl first;
        int any_first = 0;
        for (int l = 0; l < LANES; l++) { first[l] = lq[l] >= 0 && lit[l] == 1 ? -1 : 0; any_first |= first[l] != 0; }
        const int limit = tab && any_first;
        vd lim = vzero + 1.0;
#define LIMIT_ROW(o)                                                                                        \
        do {                                                                                                \
            const vd uo = VD(vb + (o)) - VD(vs + (o)), un = uo + (VD(db + (o)) - VD(ds + (o)));             \
            const vl low = first & (un < u_floor);                                                          \
            int64_t any = 0;                                                                                \
            for (int l = 0; l < LANES; l++) any |= low[l];                                                  \
            if (any) {                                                                                      \
                const vd f = (uo - u_floor) / (uo - un);                                                    \
                lim = vsel(low & (f < lim), f, lim);                                                        \
            }                                                                                               \
        } while (0)
        if (limit) LIMIT_ROW((N - 1) * LANES);
        for (int64_t n = N - 2; n >= 0; n--) {
            const int64_t o = n * LANES, p = (n + 1) * LANES;
            VD(db + o) -= VD(c0 + o) * VD(db + p) + VD(c1 + o) * VD(ds + p);
            VD(ds + o) -= VD(c2 + o) * VD(db + p) + VD(c3 + o) * VD(ds + p);
            if (limit) LIMIT_ROW(o);
        }
#undef LIMIT_ROW
        vd dmax = vzero;
        for (int64_t n = 0; n < N; n++) {
            const vd a = vabs(VD(db + n * LANES)), b = vabs(VD(ds + n * LANES));
            dmax = vsel(a > dmax, a, dmax);
            dmax = vsel(b > dmax, b, dmax);
        }
        const double dvm = j->dv_max_v, rt = j->reltol, vnt = j->vntol_v;
        vd scale = vsel(dmax > dvm, dvm / dmax, vzero + 1.0);
        scale = vsel(lim < scale, lim, scale);
        vl conv = scale == 1.0;
        for (int64_t n = 0; n < N; n++) {
            const int64_t o = n * LANES;
            const vd ob = VD(vb + o), os = VD(vs + o);
            const vd nb = ob + scale * VD(db + o), ns = os + scale * VD(ds + o);
            conv &= ~((vabs(nb - ob) > rt * vfmax(vabs(nb), vabs(ob)) + vnt) |
                      (vabs(ns - os) > rt * vfmax(vabs(ns), vabs(os)) + vnt));
            VD(vb + o) = nb; VD(vs + o) = ns;
        }
        for (int l = 0; l < LANES; l++) {
            if (lq[l] < 0) continue;
            int status = -1;
            if (bad[l]) status = 3;
            else if (!isfinite(dmax[l])) status = 2;
            else {
                if (j->sink_fixed) {
                    i_sense[l] = flow[l] + scale[l] * (dfb[l] * db[(N - 1) * LANES + l] + dfs[l] * ds[(N - 1) * LANES + l]);
                    if (N > 1) i_sense[l] += scale[l] * gs * (ds[(N - 2) * LANES + l] - ds[(N - 1) * LANES + l]);
                } else {
                    i_sense[l] = j->g_sink_s * vs[(N - 1) * LANES + l];
                }
                if (!isfinite(i_sense[l])) status = 2;
                else if (sense_settled(i_sense[l], &i_prev[l], &d_prev[l], conv[l], rt, j->abstol_a)) status = 0;
                else if (lit[l] >= j->max_iter) status = 1;
            }
            if (status < 0) continue;
            const int64_t q = lq[l];
            j->i_out[q] = status == 0 ? i_sense[l] : NAN;
            j->status[q] = status;
            j->iters[q] = lit[l];
            lq[l] = -1;
            /* an idle lane: benign values until it takes a column */
            for (int64_t r = 0; r < R; r++) { vb[r * LANES + l] = vr; vs[r * LANES + l] = 0.0; }
        }
    }
    free(mem);
    return NULL;
}

static void *dec_run(void *arg) {
    dec_job_t *j = arg;
    if ((j->g_bl_s == 0.0) != (j->g_sl_s == 0.0)) return dec_run_mixed(j);
    const cellpar_t *P = j->P;
    const int64_t R = j->R, C = j->C;
    const int merged = j->g_bl_s == 0.0;
    if (!merged && j->lanes) return dec_run_lanes(j);
    const int64_t N = merged ? 1 : R;
    const double gb = j->g_bl_s, gs = j->g_sl_s, gsh = j->g_shunt_s;
    const celltab_t *tab = j->table;
    double *buf = malloc(sizeof(double) * (size_t)(R * 2 + N * 20) + sizeof(cellws_t) * (size_t)R
                         + 2 * sizeof(int) * (size_t)R + sizeof(tabloc_t) * (size_t)R + sizeof(int) * (size_t)R + 64);
    if (!buf) {
        for (int64_t q = j->j0; q < j->j1; q++) { j->status[q] = 4; j->i_out[q] = NAN; }
        return NULL;
    }
    int *sta = (int *)((cellws_t *)(buf + R * 2 + N * 20) + R);
    /* after ws and sta (2 ints a row reserved for sta: 8-byte alignment) */
    tabloc_t *loc = (tabloc_t *)(buf + R * 2 + N * 20 + (sizeof(cellws_t) + 2 * sizeof(int)) * (size_t)R / 8);
    int *inloc = (int *)(loc + R);
    cellws_t *ws = (cellws_t *)(buf + R * 2 + N * 20);
    double *s1a = buf, *s2a = buf + R;
    double *vb = buf + 2 * R, *vs = vb + N;
    double *A = vs + N;          /* (N, 4) diagonal blocks, then reused as C' */
    double *rb = A + 4 * N, *rs = rb + N;
    double *Lb = rs + N, *Ls = Lb + N, *Ub = Ls + N, *Us = Ub + N;
    double *cp = Us + N;         /* (N, 4) C' */
    double *db = cp + 4 * N, *ds = db + N;
    /* each state's inner node and its derivatives at the ideal bias (v_read across the cell), where every
       column starts: the first guess of the cells' inner solves */
    cellws_t ws0[4];
    for (int st = 0; st < 4; st++) {
        double ia, ib, Jc[4];
        ws0[st].m = NAN; ws0[st].va = ws0[st].vb = ws0[st].dma = ws0[st].dmb = 0.0;
        cell_eval(P, j->state[st][0], j->state[st][1], j->v_read_v, 0.0, &ws0[st], &ia, &ib, Jc);
    }
    for (int64_t q = j->j0; q < j->j1; q++) {
        const int64_t k = j->kidx ? j->kidx[q] : q / C, c = j->cidx ? j->cidx[q] : q % C;
        const uint8_t *xr = j->x + k * R, *wr = j->wt + c * R;
        for (int64_t r = 0; r < R; r++) {
            const int st = 2 * (xr[r] != 0) + (wr[r] != 0);
            s1a[r] = j->state[st][0]; s2a[r] = j->state[st][1]; sta[r] = st;
            ws[r] = ws0[st];
        }
        for (int64_t n = 0; n < N; n++) { vb[n] = j->v_read_v; vs[n] = 0.0; }
        int status = 1, it;
        double i_sense = 0.0, i_prev = NAN, d_prev = INFINITY;
        for (it = 1; it <= j->max_iter; it++) {
            double ib_last = 0.0, jb_last[4] = {0, 0, 0, 0};
            int bad = 0;
            /* tabulated cells: located (and their table memory fetched) in one pass, evaluated in the next */
            if (tab) for (int64_t r = 0; r < R; r++) inloc[r] = table_locate(tab, sta[r], vb[merged ? 0 : r], vs[merged ? 0 : r], &loc[r]);
            if (merged) {   /* one node per line: every cell on it */
                /* assemble: F (currents leaving each node) into rb/rs as -F, Jacobian blocks */
                for (int64_t n = 0; n < N; n++) {
                    double fb = gsh * vb[n], fs = gsh * vs[n];
                    double a00 = gsh, a11 = gsh;
                    if (!merged) {
                        if (n > 0) { fb += gb * (vb[n] - vb[n - 1]); fs += gs * (vs[n] - vs[n - 1]); a00 += gb; a11 += gs; }
                        if (n < N - 1) { fb += gb * (vb[n] - vb[n + 1]); fs += gs * (vs[n] - vs[n + 1]); a00 += gb; a11 += gs; }
                    }
                    if (n == 0 && !j->driver_fixed) { fb += j->g_driver_s * (vb[0] - j->v_read_v); a00 += j->g_driver_s; }
                    if (n == N - 1 && !j->sink_fixed) { fs += j->g_sink_s * vs[n]; a11 += j->g_sink_s; }
                    rb[n] = fb; rs[n] = fs;
                    A[4 * n] = a00; A[4 * n + 1] = 0.0; A[4 * n + 2] = 0.0; A[4 * n + 3] = a11;
                    Lb[n] = (!merged && n > 0) ? -gb : 0.0; Ls[n] = (!merged && n > 0) ? -gs : 0.0;
                    Ub[n] = (!merged && n < N - 1) ? -gb : 0.0; Us[n] = (!merged && n < N - 1) ? -gs : 0.0;
                }
                for (int64_t r = 0; r < R; r++) {
                    const int64_t n = merged ? 0 : r;
                    double ia, ib, Jc[4];
                    if (tab && inloc[r]) table_interp(tab, &loc[r], &ia, &ib, Jc);
                    else cell_eval(P, s1a[r], s2a[r], vb[n], vs[n], &ws[r], &ia, &ib, Jc);
                    rb[n] += ia; rs[n] -= ib;
                    A[4 * n] += Jc[0]; A[4 * n + 1] += Jc[1]; A[4 * n + 2] -= Jc[2]; A[4 * n + 3] -= Jc[3];
                    if (n == N - 1) { ib_last += ib; jb_last[2] += Jc[2]; jb_last[3] += Jc[3]; }
                }
                /* Dirichlet rows */
                if (j->driver_fixed) {
                    rb[0] = vb[0] - j->v_read_v; A[0] = 1.0; A[1] = 0.0; Ub[0] = 0.0;
                }
                if (j->sink_fixed) {
                    rs[N - 1] = vs[N - 1]; A[4 * (N - 1) + 2] = 0.0; A[4 * (N - 1) + 3] = 1.0; Ls[N - 1] = 0.0;
                }
                /* solve J d = -F: block Thomas (L, U diagonal 2x2) */
                for (int64_t n = 0; n < N; n++) {
                    double a0 = A[4 * n], a1 = A[4 * n + 1], a2 = A[4 * n + 2], a3 = A[4 * n + 3];
                    double r0 = -rb[n], r1 = -rs[n];
                    if (n > 0) {   /* M = A - L C'_{n-1}; r -= L d_{n-1} */
                        const double *cq = cp + 4 * (n - 1);
                        a0 -= Lb[n] * cq[0]; a1 -= Lb[n] * cq[1];
                        a2 -= Ls[n] * cq[2]; a3 -= Ls[n] * cq[3];
                        r0 -= Lb[n] * db[n - 1]; r1 -= Ls[n] * ds[n - 1];
                    }
                    const double det = a0 * a3 - a1 * a2;
                    if (!(fabs(det) > 1e-300) || !isfinite(det)) { bad = 1; break; }
                    const double rdet = 1.0 / det;   /* one division per row (the row's latency chain) */
                    const double i0 = a3 * rdet, i1 = -a1 * rdet, i2 = -a2 * rdet, i3 = a0 * rdet;
                    /* C' = M^-1 diag(Ub, Us) */
                    cp[4 * n] = i0 * Ub[n]; cp[4 * n + 1] = i1 * Us[n];
                    cp[4 * n + 2] = i2 * Ub[n]; cp[4 * n + 3] = i3 * Us[n];
                    db[n] = i0 * r0 + i1 * r1; ds[n] = i2 * r0 + i3 * r1;
                }
            } else {
                /* one pass down the column: each row's wires and cell, then its block-Thomas elimination (the
                   same arithmetic as the merged path's separate loops; the cells of the next rows overlap the
                   elimination's dependency chain) */
                for (int64_t n = 0; n < N; n++) {
                    double fb = gsh * vb[n], fs = gsh * vs[n];
                    double a00 = gsh, a11 = gsh;
                    if (n > 0) { fb += gb * (vb[n] - vb[n - 1]); fs += gs * (vs[n] - vs[n - 1]); a00 += gb; a11 += gs; }
                    if (n < N - 1) { fb += gb * (vb[n] - vb[n + 1]); fs += gs * (vs[n] - vs[n + 1]); a00 += gb; a11 += gs; }
                    if (n == 0 && !j->driver_fixed) { fb += j->g_driver_s * (vb[0] - j->v_read_v); a00 += j->g_driver_s; }
                    if (n == N - 1 && !j->sink_fixed) { fs += j->g_sink_s * vs[n]; a11 += j->g_sink_s; }
                    double ia, ib, Jc[4];
                    if (tab && inloc[n]) table_interp(tab, &loc[n], &ia, &ib, Jc);
                    else cell_eval(P, s1a[n], s2a[n], vb[n], vs[n], &ws[n], &ia, &ib, Jc);
                    fb += ia; fs -= ib;
                    double a0 = a00 + Jc[0], a1 = 0.0 + Jc[1], a2 = 0.0 - Jc[2], a3 = a11 - Jc[3];
                    double lb = n > 0 ? -gb : 0.0, ls = n > 0 ? -gs : 0.0;
                    double ub = n < N - 1 ? -gb : 0.0, us = n < N - 1 ? -gs : 0.0;
                    if (n == N - 1) { ib_last += ib; jb_last[2] += Jc[2]; jb_last[3] += Jc[3]; }
                    /* Dirichlet rows */
                    if (n == 0 && j->driver_fixed) { fb = vb[0] - j->v_read_v; a0 = 1.0; a1 = 0.0; ub = 0.0; }
                    if (n == N - 1 && j->sink_fixed) { fs = vs[N - 1]; a2 = 0.0; a3 = 1.0; ls = 0.0; }
                    double r0 = -fb, r1 = -fs;
                    if (n > 0) {   /* M = A - L C'_{n-1}; r -= L d_{n-1} */
                        const double *cq = cp + 4 * (n - 1);
                        a0 -= lb * cq[0]; a1 -= lb * cq[1];
                        a2 -= ls * cq[2]; a3 -= ls * cq[3];
                        r0 -= lb * db[n - 1]; r1 -= ls * ds[n - 1];
                    }
                    const double det = a0 * a3 - a1 * a2;
                    if (!(fabs(det) > 1e-300) || !isfinite(det)) { bad = 1; break; }
                    const double rdet = 1.0 / det;
                    const double i0 = a3 * rdet, i1 = -a1 * rdet, i2 = -a2 * rdet, i3 = a0 * rdet;
                    cp[4 * n] = i0 * ub; cp[4 * n + 1] = i1 * us;
                    cp[4 * n + 2] = i2 * ub; cp[4 * n + 3] = i3 * us;
                    db[n] = i0 * r0 + i1 * r1; ds[n] = i2 * r0 + i3 * r1;
                }
            }
            /* the sink-side flow into the fixed sink node, before this step (for a zero-ohm sink) */
            double flow = ib_last, dflow_dvb = 0.0, dflow_dvs = 0.0;
            if (j->sink_fixed) {
                dflow_dvb = jb_last[2]; dflow_dvs = jb_last[3];
                if (N > 1) flow += gs * (vs[N - 2] - vs[N - 1]);
            }
            if (bad) { status = 3; break; }
            for (int64_t n = N - 2; n >= 0; n--) {
                const double *cq = cp + 4 * n;
                db[n] -= cq[0] * db[n + 1] + cq[1] * ds[n + 1];
                ds[n] -= cq[2] * db[n + 1] + cq[3] * ds[n + 1];
            }
            double dmax = 0.0;
            for (int64_t n = 0; n < N; n++) {
                const double a = fabs(db[n]), b = fabs(ds[n]);
                if (a > dmax) dmax = a;
                if (b > dmax) dmax = b;
            }
            if (!isfinite(dmax)) { status = 2; break; }
            const double scale = dmax > j->dv_max_v ? j->dv_max_v / dmax : 1.0;
            int conv = scale == 1.0;
            for (int64_t n = 0; n < N; n++) {
                const double nb = vb[n] + scale * db[n], ns = vs[n] + scale * ds[n];
                if (conv && (fabs(nb - vb[n]) > j->reltol * fmax(fabs(nb), fabs(vb[n])) + j->vntol_v ||
                             fabs(ns - vs[n]) > j->reltol * fmax(fabs(ns), fabs(vs[n])) + j->vntol_v)) conv = 0;
                vb[n] = nb; vs[n] = ns;
            }
            /* sensed current after the step (first order in the step for a zero-ohm sink: exact to O(d^2)) */
            if (j->sink_fixed) {
                i_sense = flow + scale * (dflow_dvb * db[N - 1] + dflow_dvs * ds[N - 1]);
                if (N > 1) i_sense += scale * gs * (ds[N - 2] - ds[N - 1]);
            } else {
                i_sense = j->g_sink_s * vs[N - 1];
            }
            if (!isfinite(i_sense)) { status = 2; break; }
            if (sense_settled(i_sense, &i_prev, &d_prev, conv, j->reltol, j->abstol_a)) { status = 0; break; }
        }
        j->i_out[q] = status == 0 ? i_sense : NAN;
        j->status[q] = status;
        j->iters[q] = it > j->max_iter ? j->max_iter : it;
    }
    free(buf);
    return NULL;
}

/* How many columns dec_run_lanes solves at once in this build. */
int cosim_solver_lanes(void) { return LANES; }

/* The threads for n items: nthreads clamped to 1..64 and to n. */
static int thread_count(int nthreads, int64_t n) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    if (nthreads > n) nthreads = (int)(n > 0 ? n : 1);
    return nthreads;
}

/* Runs fn on the n jobs of `jobs` (each `size` bytes): jobs 1.. on their own threads, job 0 on the caller's;
   a job whose thread did not start runs on the caller's too. */
static void run_jobs(void *jobs, size_t size, int n, void *(*fn)(void *)) {
    char *p = (char *)jobs;
    pthread_t tid[64];
    int started[64];
    for (int t = 1; t < n; t++) started[t] = pthread_create(&tid[t], 0, fn, p + (size_t)t * size) == 0;
    fn(p);
    for (int t = 1; t < n; t++) {
        if (started[t]) pthread_join(tid[t], 0); else fn(p + (size_t)t * size);
    }
}

int cosim_solve_decoupled(const dec_job_t *job, int nthreads) {
    const int64_t n = job->kidx ? job->npairs : job->K * job->C;
    nthreads = thread_count(nthreads, n);
    dec_job_t jobs[64];
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = *job;
        jobs[t].j0 = n * t / nthreads;
        jobs[t].j1 = n * (t + 1) / nthreads;
    }
    run_jobs(jobs, sizeof jobs[0], nthreads, dec_run);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
#include <string.h>
/* Coupled arrays (cosim.circuit.solver, topology "coupled"): every column line (R nodes, wires g_col) and
   every row line (C nodes, wires g_row) of one input vector; a line of zero-ohm wires is one node. Cell
   (r, c) joins column-line node U(c, r) and row-line node W(r, c): gate-driven cells (8T-SRAM) from the
   column's bit line (a) to the row's source line (b), line-driven cells (1T-1R, resistor) from the row
   line (a) to the column line (b). The column lines' periphery is at row 0 (gate-driven: the driver from
   the sense node at v_read) or row R-1 (line-driven: the sink, its node's shunt included, to the ammeter
   at ground); the row lines' at column 0 (gate-driven: the sink to ground; line-driven: the driver at the
   row's voltage). A zero-ohm periphery holds its node (Dirichlet row).
   Newton's method with the exact Jacobian, its linear system solved by right-preconditioned restarted
   GMRES; the preconditioner is one block Gauss-Seidel sweep (every column line's tridiagonal system with
   the row lines held, then every row line's with the columns' new values), the tridiagonal systems
   factored once per Newton iteration, which makes the preconditioned system the identity on the row
   lines: GMRES runs on the column lines' nodes only (cpl_gmres). The linear solve stops at a residual of
   lin_rtol times the right-hand side's (an inexact Newton step, lin_rtol far below the Newton tolerance; the first
   step, which never converges, at lin_rtol_first).
   The first iteration's cells sit at the ideal bias (the start): taken per state, with the decoupled lanes'
   first step (the chord through 0 V where it is the smaller conductance: 1T-1R, one iteration fewer on
   128-row, 128-column and 256-row arrays). Each step is stopped at the bounds the solution lies within ([0, v_read]
   give or take CPL_BOUND_MARGIN) node by node, then damped as the decoupled columns' (a first step that stops more
   than CPL_RETAKE_FRACTION of the nodes is taken again from every cell's chord through 0 V); the same
   node test and sensed-current test (sense_settled, every column of the vector) as the decoupled columns;
   a vector's status is its columns'. One thread per slice of the input vectors. */
typedef struct {
    const cellpar_t *P;
    int64_t K, R, C;
    const uint8_t *x;            /* (K, R) inputs */
    const uint8_t *w;            /* (R, C) weights */
    double state[4][2];          /* cell state (s1, s2) for [2 * input + weight] */
    int32_t tstate[4];           /* the table's state of each, -1: exact cells */
    int32_t gate_driven;         /* 1: 8T-SRAM wiring (column line = side a), 0: line-driven (column line = side b) */
    double v_read_v;
    double g_col_s, g_row_s;     /* wire segment conductances of the column and row lines; 0: the line is one node */
    double g_col_end_s;          /* the column lines' periphery conductance (gate: driver; line: sink + its node's shunt) */
    double g_row_end_s;          /* the row lines' (gate: sink; line: driver) */
    int32_t col_end_fixed, row_end_fixed;   /* zero-ohm periphery: that node held */
    double g_shunt_s;            /* every line node's shunt to ground (the deck's rshunt) */
    int32_t max_iter;
    double reltol, vntol_v, abstol_a, dv_max_v;
    double lin_rtol;             /* GMRES: relative residual of each Newton step's linear solve */
    double lin_rtol_first;       /* ... of the first step (from the ideal start; never the converged one) */
    int32_t gmres_restart, gmres_max;   /* Krylov vectors before a restart; most GMRES iterations per Newton step */
    int64_t k0, k1;              /* this thread's vectors */
    double *i_out;               /* (K, C) sensed current (A) */
    int32_t *status;             /* (K, C) as the decoupled job's (every column of a vector alike) */
    int32_t *iters;              /* (K, C) Newton iterations of the vector */
    int64_t *lin_iters;          /* (K,) GMRES iterations of the vector, all Newton steps together (or NULL) */
    const celltab_t *table;      /* NULL: exact cells */
    const celltab_t *rtable;     /* NULL, or the cells biased the other way (vb > va): looked up at (vb, va), minus the
                                    currents (cosim.circuit.solver.cell_table_reverse) */
} cpl_job_t;

/* The linear system of one Newton step. Node order: the column lines' nodes row by row, U(c, r) = r C + c
   (row r of every column side by side), then the row lines' nodes column by column, W(r, c) = nU + c R + r;
   a line of zero-ohm wires has one node (index r or c taken as 0). So each line's tridiagonal solve runs
   over all lines at once, vectorised across the lines. */
typedef struct {
    int64_t R, C, LU, LW, nU, n;
    int64_t su, sw;              /* U(c, r) = r su + c, W(r, c) = nU + c sw + r (su = C, sw = R; 0 for a one-node line) */
    const double *dg;            /* (n) diagonal (wires, periphery, shunt, cells' own terms; 1 where held) */
    const uint8_t *fx;           /* (n) held nodes */
    const int64_t *held;         /* their indices (nheld) */
    int64_t nheld;
    const double *cUW, *cWU;     /* (R*C) cell couplings: U(c, r)'s row x W(r, c), W(r, c)'s row x U(c, r) (0 where held) */
    double gc, gr;
    double *cp, *mp, *ls;        /* (n) tridiagonal factors: c', 1/pivot, sub-diagonal / pivot */
} cpl_sys_t;

static inline int64_t cpl_u(const cpl_sys_t *S, int64_t c, int64_t r) { return r * S->su + c; }
static inline int64_t cpl_w(const cpl_sys_t *S, int64_t r, int64_t c) { return S->nU + c * S->sw + r; }

/* factor nl tridiagonal systems of L nodes side by side (diag dg, off-diagonals -g, identity rows where held) */
static int cpl_factor_lines(const double *dg, const uint8_t *fx, double g, int64_t L, int64_t nl, double *cp,
                            double *mp, double *ls) {
    for (int64_t i = 0; i < L; i++) {
        const int64_t o = i * nl;
        for (int64_t l = 0; l < nl; l++) {
            const double sub = (i > 0 && !fx[o + l]) ? -g : 0.0, sup = (i < L - 1 && !fx[o + l]) ? -g : 0.0;
            const double m = dg[o + l] - (i > 0 ? sub * cp[o + l - nl] : 0.0);
            if (!(fabs(m) > 1e-300) || !isfinite(m)) return 0;
            mp[o + l] = 1.0 / m;
            cp[o + l] = sup * mp[o + l];
            ls[o + l] = sub * mp[o + l];
        }
    }
    return 1;
}

/* K vectors of lines side by side (nl = K LANES), each one's running value kept in a register: the sweeps' dependency
   chain of L steps then runs through registers, not through a store and a load per step (as the general loop below,
   whose inner loop does not know nl); the arithmetic of the general loop's, lane by lane */
typedef double vdu_t __attribute__((vector_size(8 * LANES), aligned(8)));
#define CPL_SOLVE_LINES_K(K)                                                                                 \
    do {                                                                                                     \
        vdu_t p[K];                                                                                          \
        for (int k = 0; k < K; k++) {                                                                        \
            p[k] = *(const vdu_t *)(z + k * LANES) * *(const vdu_t *)(mp + k * LANES);                       \
            *(vdu_t *)(z + k * LANES) = p[k];                                                                \
        }                                                                                                    \
        for (int64_t i = 1; i < L; i++)                                                                      \
            for (int k = 0; k < K; k++) {                                                                    \
                const int64_t o = i * nl + k * LANES;                                                        \
                p[k] = *(const vdu_t *)(z + o) * *(const vdu_t *)(mp + o) - *(const vdu_t *)(ls + o) * p[k];  \
                *(vdu_t *)(z + o) = p[k];                                                                    \
            }                                                                                                \
        for (int64_t i = L - 2; i >= 0; i--)                                                                 \
            for (int k = 0; k < K; k++) {                                                                    \
                const int64_t o = i * nl + k * LANES;                                                        \
                p[k] = *(const vdu_t *)(z + o) - *(const vdu_t *)(cp + o) * p[k];                            \
                *(vdu_t *)(z + o) = p[k];                                                                    \
            }                                                                                                \
    } while (0)

static void cpl_solve_lines(int64_t L, int64_t nl, const double *cp, const double *mp, const double *ls, double *z) {
    if (nl == LANES) { CPL_SOLVE_LINES_K(1); return; }
    if (nl == 2 * LANES) { CPL_SOLVE_LINES_K(2); return; }
    for (int64_t l = 0; l < nl; l++) z[l] *= mp[l];
    for (int64_t i = 1; i < L; i++) {
        const int64_t o = i * nl;
        for (int64_t l = 0; l < nl; l++) z[o + l] = z[o + l] * mp[o + l] - ls[o + l] * z[o + l - nl];
    }
    for (int64_t i = L - 2; i >= 0; i--) {
        const int64_t o = i * nl;
        for (int64_t l = 0; l < nl; l++) z[o + l] -= cp[o + l] * z[o + l + nl];
    }
}

static int cpl_factor(cpl_sys_t *S) {
    const int64_t nU = S->nU;
    return cpl_factor_lines(S->dg, S->fx, S->gc, S->LU, S->C, S->cp, S->mp, S->ls)
        && cpl_factor_lines(S->dg + nU, S->fx + nU, S->gr, S->LW, S->R, S->cp + nU, S->mp + nU, S->ls + nU);
}

/* a . b in LANES partial sums (vectorised; the sum's order fixed by n alone) */
typedef double vdu __attribute__((vector_size(8 * LANES), aligned(8)));
static double cpl_dot(const double *a, const double *b, int64_t n) {
    vd acc = vzero, acc2 = vzero;
    int64_t i = 0;
    for (; i + 2 * LANES <= n; i += 2 * LANES) {
        acc += *(const vdu *)(a + i) * *(const vdu *)(b + i);
        acc2 += *(const vdu *)(a + i + LANES) * *(const vdu *)(b + i + LANES);
    }
    for (; i + LANES <= n; i += LANES) acc += *(const vdu *)(a + i) * *(const vdu *)(b + i);
    acc += acc2;
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static double cpl_norm(const double *a, int64_t n) { return sqrt(cpl_dot(a, a, n)); }

/* sum |a| + |b| (b may be NULL) in LANES partial sums: finite unless some value is not */
static double cpl_abssum(const double *a, const double *b, int64_t n) {
    vd acc = vzero;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        acc += vabs(*(const vdu *)(a + i));
        if (b) acc += vabs(*(const vdu *)(b + i));
    }
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += fabs(a[i]) + (b ? fabs(b[i]) : 0.0);
    return s;
}

/* max |a| in LANES partial maxima (NaN and infinity: not finite) */
static double cpl_absmax(const double *a, int64_t n) {
    vd acc = vzero;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const vd x = vabs(*(const vdu *)(a + i));
        acc = vsel(x > acc, x, acc);
    }
    double m = 0.0;
    for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
    for (; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* The Newton system J d = b reduced to the column lines' nodes: with M the block lower-triangular part of J
   (the preconditioner: every line's tridiagonal block and the row lines' couplings to the columns), J = M + N,
   N the column lines' couplings to the row lines (cUW), so J M^-1 = I + N M^-1 is the identity on the row
   lines' part. Right-preconditioned GMRES therefore runs on the column lines' nodes alone:
   (I + N M^-1 [y; 0]) y = b_U - N M^-1 [0; b_W], then d = M^-1 [y; b_W]; its residual is J d - b's. */

/* out = y + N M^-1 [y; 0] (z: n of work) */
static void cpl_op(const cpl_sys_t *S, const double *y, double *out, double *z) {
    const int64_t nU = S->nU;
    memcpy(z, y, sizeof(double) * (size_t)nU);
    memset(z + nU, 0, sizeof(double) * (size_t)(S->n - nU));
    cpl_solve_lines(S->LU, S->C, S->cp, S->mp, S->ls, z);
    for (int64_t r = 0; r < S->R; r++)
        for (int64_t c = 0; c < S->C; c++) z[cpl_w(S, r, c)] -= S->cWU[r * S->C + c] * z[cpl_u(S, c, r)];
    cpl_solve_lines(S->LW, S->R, S->cp + nU, S->mp + nU, S->ls + nU, z + nU);
    memcpy(out, y, sizeof(double) * (size_t)nU);
    for (int64_t r = 0; r < S->R; r++)
        for (int64_t c = 0; c < S->C; c++) out[cpl_u(S, c, r)] += S->cUW[r * S->C + c] * z[cpl_w(S, r, c)];
}

/* GMRES(m) on the reduced system: d with |b - J d| <= rtol |b| (or the iteration budget spent); the
   iterations taken. V: (m + 1) nU, H: (m + 1) m, work: 3 n + 3 (m + 1), Z: (m + 1) n, dz: n. Each product keeps
   its M^-1 [v_j; 0] (Z's row j), so that the step d = M^-1 [y; b_W] = sum_j g_j Z_j + [0; T_W^-1 b_W] is formed
   from them (one pass over each) rather than by one more preconditioner solve (its column lines' sweeps a
   dependency chain of R rows). */
static int64_t cpl_gmres(const cpl_sys_t *S, const double *b, double *d, double rtol, int m, int maxit,
                         double *V, double *H, double *work, double *Z, double *dz) {
    const int64_t n = S->n, nU = S->nU;
    double *r = work, *z = work + n, *y = work + 2 * n, *cs = work + 3 * n, *sn = cs + (m + 1), *g = sn + (m + 1);
    const double bn = cpl_norm(b, n);
    if (!(bn > 0.0)) { for (int64_t i = 0; i < n; i++) d[i] = 0.0; return 0; }
    const double tol = rtol * bn;
    /* the reduced right-hand side: b_U - N M^-1 [0; b_W] */
    memset(z, 0, sizeof(double) * (size_t)nU);
    memcpy(z + nU, b + nU, sizeof(double) * (size_t)(n - nU));
    cpl_solve_lines(S->LW, S->R, S->cp + nU, S->mp + nU, S->ls + nU, z + nU);
    double *rhs = d;   /* d's first nU hold the reduced right-hand side until the end */
    memcpy(rhs, b, sizeof(double) * (size_t)nU);
    for (int64_t rr = 0; rr < S->R; rr++)
        for (int64_t c = 0; c < S->C; c++) rhs[cpl_u(S, c, rr)] -= S->cUW[rr * S->C + c] * z[cpl_w(S, rr, c)];
    for (int64_t i = 0; i < nU; i++) { y[i] = 0.0; r[i] = rhs[i]; }
    for (int64_t i = 0; i < n; i++) dz[i] = 0.0;
    double beta = cpl_norm(r, nU);
    int64_t total = 0;
    while (beta > tol && total < maxit) {
        for (int64_t i = 0; i < nU; i++) V[i] = r[i] / beta;
        for (int k = 0; k <= m; k++) g[k] = 0.0;
        g[0] = beta;
        int j, used = 0;
        for (j = 0; j < m && total < maxit; j++) {
            double *vj = V + (int64_t)j * nU, *w = V + (int64_t)(j + 1) * nU;
            cpl_op(S, vj, w, Z + (int64_t)j * n);
            total++;
            for (int i = 0; i <= j; i++) {   /* modified Gram-Schmidt */
                const double *vi = V + (int64_t)i * nU;
                const double h = cpl_dot(w, vi, nU);
                H[i * m + j] = h;
                for (int64_t k = 0; k < nU; k++) w[k] -= h * vi[k];
            }
            const double hn = cpl_norm(w, nU);
            H[(j + 1) * m + j] = hn;
            if (hn > 0.0) for (int64_t k = 0; k < nU; k++) w[k] /= hn;
            for (int i = 0; i < j; i++) {    /* the earlier rotations */
                const double a = H[i * m + j], c2 = H[(i + 1) * m + j];
                H[i * m + j] = cs[i] * a + sn[i] * c2;
                H[(i + 1) * m + j] = -sn[i] * a + cs[i] * c2;
            }
            const double a = H[j * m + j], c2 = H[(j + 1) * m + j], dd = hypot(a, c2);
            cs[j] = dd > 0.0 ? a / dd : 1.0; sn[j] = dd > 0.0 ? c2 / dd : 0.0;
            H[j * m + j] = dd; H[(j + 1) * m + j] = 0.0;
            g[j + 1] = -sn[j] * g[j]; g[j] = cs[j] * g[j];
            used = j + 1;
            if (fabs(g[j + 1]) <= tol || !(hn > 0.0)) break;
        }
        /* the residual's norm as the rotations leave it: where it meets the tolerance (or the budget is spent) the
           cycle's update is the last, and the residual is not formed again */
        const double g_last = fabs(g[used]);
        /* coefficients: H^-1 g (upper triangular); y += V coefficients */
        for (int i = used - 1; i >= 0; i--) {
            double s = g[i];
            for (int k = i + 1; k < used; k++) s -= H[i * m + k] * g[k];
            g[i] = H[i * m + i] != 0.0 ? s / H[i * m + i] : 0.0;
        }
        for (int i = 0; i < used; i++) {
            const double *zi = Z + (int64_t)i * n;
            for (int64_t k = 0; k < n; k++) dz[k] += g[i] * zi[k];
        }
        if (used == 0 || g_last <= tol || total >= maxit) break;
        for (int i = 0; i < used; i++) {   /* y, for the residual at the restart */
            const double *vi = V + (int64_t)i * nU;
            for (int64_t k = 0; k < nU; k++) y[k] += g[i] * vi[k];
        }
        cpl_op(S, y, r, Z + (int64_t)m * n);
        for (int64_t k = 0; k < nU; k++) r[k] = rhs[k] - r[k];
        beta = cpl_norm(r, nU);
    }
    /* d = M^-1 [y; b_W] = M^-1 [y; 0] + [0; T_W^-1 b_W] */
    for (int64_t i = 0; i < nU; i++) d[i] = dz[i];
    for (int64_t i = nU; i < n; i++) d[i] = dz[i] + z[i];
    return total;
}

/* F (currents leaving each node) and the Jacobian's diagonal from the wires of `width` lines side by side, each
   of `nodes` nodes (node i of line k at [i * width + k]), wire conductance g, shunt gsh to ground. */
static inline void line_stamps(const double *V, double *F, double *dg, int64_t nodes, int64_t width, double g,
                               double gsh) {
    for (int64_t i = 0; i < nodes; i++) {
        const int64_t o = i * width;
        for (int64_t k = 0; k < width; k++) {
            double f = gsh * V[o + k], a = gsh;
            if (i > 0) { f += g * (V[o + k] - V[o + k - width]); a += g; }
            if (i < nodes - 1) { f += g * (V[o + k] - V[o + k + width]); a += g; }
            F[o + k] = f; dg[o + k] = a;
        }
    }
}

/* how far beyond [0, v_read] (a fraction of v_read) a Newton step may take a node (cpl_run) */
#ifndef CPL_BOUND_MARGIN
#define CPL_BOUND_MARGIN 0.02
#endif
/* the fraction of the nodes a first step may stop at the bounds before it is taken again from the chords (cpl_run):
   the Newton iteration more costs about 2 R C tabulated cells' time and the retaken step one linear solve more
   (~3 R C together), a node stopped ~8-70 (its cell exact in the next iteration: 0.1-0.85 us cold, against ~12 ns
   tabulated), so the break-even lies between ~2 and ~20 % of the 2 R C nodes. Measured on the 8T-SRAM bench
   arrays (128 and 256 rows, 10 and 20 ohm, patterns and network operands): 5 % and 15 % alike in CPU time within
   the noise of a loaded machine, 15 % with fewer Newton iterations at 128 rows (4.49 against 4.84 on the
   patterns at 10 ohm); never retaken (100 %): 256-row arrays 1.4-1.6x slower */
#ifndef CPL_RETAKE_FRACTION
#define CPL_RETAKE_FRACTION 0.15
#endif

/* how many groups of cells ahead of their evaluation the coupled kernel locates them in the tables (cpl_run) */
#ifndef CPL_LOCATE_AHEAD
#define CPL_LOCATE_AHEAD 4
#endif

static void *cpl_run(void *arg) {
    cpl_job_t *j = arg;
    const cellpar_t *P = j->P;
    const int64_t R = j->R, C = j->C, RC = R * C;
    const int gate = j->gate_driven;
    cpl_sys_t S;
    S.R = R; S.C = C;
    S.LU = j->g_col_s != 0.0 ? R : 1;
    S.LW = j->g_row_s != 0.0 ? C : 1;
    S.nU = C * S.LU;
    S.n = S.nU + R * S.LW;
    S.gc = j->g_col_s; S.gr = j->g_row_s;
    S.su = S.LU == 1 ? 0 : C; S.sw = S.LW == 1 ? 0 : R;
    const int64_t n = S.n, nU = S.nU, LU = S.LU, LW = S.LW;
    const int m = j->gmres_restart < 1 ? 1 : j->gmres_restart;
    const double vr = j->v_read_v, gsh = j->g_shunt_s;
    const celltab_t *tab = j->table;
    /* the cells in groups of LANES (the tabulated ones vectorised as the decoupled lanes'): per cell, in the
       order q = r C + c, padded to whole groups, 64-byte aligned */
    const int64_t ng = (RC + LANES - 1) / LANES, np = ng * LANES;
    const size_t nd = (size_t)(n * (m + 13) + RC * 6 + (m + 1) * m + 3 * (m + 1) + C * 3 + 32);
    double *mem = malloc(sizeof(double) * nd + sizeof(cellws_t) * (size_t)RC + (size_t)n + 64);
    void *lmem = NULL;
    double *zmem = malloc(sizeof(double) * (size_t)(n * (m + 2)));   /* cpl_gmres' Z and dz */
    if (posix_memalign(&lmem, 64, (size_t)np * (10 * sizeof(double) + 4 * sizeof(int32_t))) != 0) lmem = NULL;
    if (!mem || !lmem || !zmem) {
        free(mem); free(lmem); free(zmem);
        for (int64_t k = j->k0; k < j->k1; k++)
            for (int64_t c = 0; c < C; c++) { j->status[k * C + c] = 4; j->i_out[k * C + c] = NAN; j->iters[k * C + c] = 0; }
        return NULL;
    }
    double *V = mem, *F = V + n, *dg = F + n, *d = dg + n, *hold = d + n;
    double *cp = hold + n, *mp = cp + n, *ls = mp + n;
    double *KV = ls + n, *KH = KV + n * (m + 1), *gw = KH + (m + 1) * m;
    double *cUW = gw + 3 * n + 3 * (m + 1), *cWU = cUW + RC, *cJ = cWU + RC;   /* cJ: (RC, 4) J */
    double *isense = cJ + 4 * RC, *iprev = isense + C, *dprev = iprev + C;
    int64_t *held = (int64_t *)(dprev + C + 8);   /* n at most */
    cellws_t *ws = (cellws_t *)(held + n + 8);
    uint8_t *fx = (uint8_t *)(ws + RC);
    /* the 8-byte fields first, then the 4-byte ones: np is a multiple of LANES, so each field starts aligned for the
       lanes' whole-vector loads and stores (locate_row); rlu...rinloc: the reverse table's locations (rtable) */
    double *lva = lmem, *lvb = lva + np, *lu = lvb + np, *lv = lu + np, *luv = lv + np;
    int64_t *loff = (int64_t *)(luv + np);
    double *rlu = (double *)(loff + np), *rlv = rlu + np, *rluv = rlv + np;
    int64_t *rloff = (int64_t *)(rluv + np);
    int *lst = (int *)(rloff + np), *inloc = lst + np, *sta = inloc + np, *rinloc = sta + np;
    S.dg = dg; S.fx = fx; S.held = held; S.cUW = cUW; S.cWU = cWU; S.cp = cp; S.mp = mp; S.ls = ls;
    for (int64_t q = 0; q < np; q++) { lva[q] = vr; lvb[q] = 0.0; lst[q] = 0; inloc[q] = 0; sta[q] = 0; rinloc[q] = 0; }
    /* the ideal bias of each state, where the cells' inner solves start */
    cellws_t ws0[4];
    for (int st = 0; st < 4; st++) {
        double ia, ib, Jc[4];
        ws0[st].m = NAN; ws0[st].va = ws0[st].vb = ws0[st].dma = ws0[st].dmb = 0.0;
        cell_eval(P, j->state[st][0], j->state[st][1], vr, 0.0, &ws0[st], &ia, &ib, Jc);
    }
    /* the first iteration's cells, all at the ideal bias (gate-driven: v_read across; line-driven: the row's
       voltage across, the column line at 0 V): per state, once (the table where it covers the point); with
       the decoupled lanes' first step (dec_run_lanes): the chord through 0 V where it is the smaller
       conductance */
    cellstart_t cs[4], cc[4];
    int chord_differs = 0;
    for (int st = 0; st < 4; st++) {
        const double va0 = (gate || st >= 2) ? vr : 0.0;
        cs[st].ws = ws0[st];
        cellws_t w0 = ws0[st];
        if (!(tab && j->tstate[st] >= 0 && table_cell(tab, j->tstate[st], va0, 0.0, &cs[st].ia, &cs[st].ib, cs[st].J)))
            cell_eval(P, j->state[st][0], j->state[st][1], va0, 0.0, &w0, &cs[st].ia, &cs[st].ib, cs[st].J);
        const double g_chord = va0 > 0.0 ? cs[st].ia / va0 : 0.0;
        if (g_chord > 0.0 && g_chord < cs[st].J[0]) {
            cs[st].J[0] = g_chord; cs[st].J[1] = -g_chord; cs[st].J[2] = cs[st].ib / va0; cs[st].J[3] = -cs[st].ib / va0;
        }
        /* the chord alone (cc): the first step again from it where the one above leaves the bounds below */
        cc[st] = cs[st];
        if (g_chord > 0.0 && g_chord != cs[st].J[0]) {
            cc[st].J[0] = g_chord; cc[st].J[1] = -g_chord; cc[st].J[2] = cs[st].ib / va0; cc[st].J[3] = -cs[st].ib / va0;
            chord_differs = 1;
        }
    }
    const int64_t rb_col = gate ? 0 : LU - 1;      /* the column lines' periphery node (row) */
    const double lo_v = -CPL_BOUND_MARGIN * vr, hi_v = (1.0 + CPL_BOUND_MARGIN) * vr;
    for (int64_t k = j->k0; k < j->k1; k++) {
        const uint8_t *xr = j->x + k * R;
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) {
                const int64_t q = r * C + c;
                const int st = 2 * (xr[r] != 0) + (j->w[q] != 0);
                sta[q] = st;
                lst[q] = tab && j->tstate[st] >= 0 ? j->tstate[st] : 0;
                ws[q] = ws0[st];
            }
        /* start: the ideal array (driven lines at their drivers' voltage, the others at 0 V); held nodes */
        for (int64_t i = 0; i < n; i++) { fx[i] = 0; hold[i] = 0.0; }
        for (int64_t i = 0; i < nU; i++) V[i] = gate ? vr : 0.0;
        for (int64_t c = 0; c < LW; c++)
            for (int64_t r = 0; r < R; r++) V[nU + c * R + r] = gate ? 0.0 : (xr[r] ? vr : 0.0);
        if (j->col_end_fixed)
            for (int64_t c = 0; c < C; c++) { const int64_t i = rb_col * C + c; fx[i] = 1; hold[i] = gate ? vr : 0.0; V[i] = hold[i]; }
        if (j->row_end_fixed)
            for (int64_t r = 0; r < R; r++) { const int64_t i = nU + r; fx[i] = 1; hold[i] = gate ? 0.0 : (xr[r] ? vr : 0.0); V[i] = hold[i]; }
        S.nheld = 0;
        for (int64_t i = 0; i < n; i++) if (fx[i]) held[S.nheld++] = i;
        for (int64_t c = 0; c < C; c++) { iprev[c] = NAN; dprev[c] = INFINITY; isense[c] = 0.0; }
        int status = 1, it, chord_first = 0;
        int64_t lin_total = 0;
        for (it = 1; it <= j->max_iter; it++) {
            /* F (currents leaving each node) and the Jacobian's diagonal: lines, periphery, shunts */
            line_stamps(V, F, dg, LU, C, S.gc, gsh);
            if (!j->col_end_fixed)
                for (int64_t c = 0; c < C; c++) {
                    const int64_t i = rb_col * C + c;
                    F[i] += j->g_col_end_s * (V[i] - (gate ? vr : 0.0)); dg[i] += j->g_col_end_s;
                }
            line_stamps(V + nU, F + nU, dg + nU, LW, R, S.gr, gsh);
            if (!j->row_end_fixed)
                for (int64_t r = 0; r < R; r++) {
                    F[nU + r] += j->g_row_end_s * (V[nU + r] - (gate ? 0.0 : (xr[r] ? vr : 0.0)));
                    dg[nU + r] += j->g_row_end_s;
                }
            /* the cells: tabulated ones a group at a time (exact where off the grid), then their stamps */
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) {
                    const int64_t q = r * C + c, u = cpl_u(&S, c, r), w = cpl_w(&S, r, c);
                    lva[q] = gate ? V[u] : V[w]; lvb[q] = gate ? V[w] : V[u];
                }
            /* each group located (forward table, then the reverse one for its reverse-biased cells) CPL_LOCATE_AHEAD
               groups before its evaluation, as the decoupled lanes do: the table memory it fetches arrives meanwhile */
            for (int64_t g = 0; it > 1 && g < ng + CPL_LOCATE_AHEAD; g++) {
                const int64_t ga = g, ge = g - CPL_LOCATE_AHEAD;
                if (tab && ga < ng) {
                    const int64_t q0 = ga * LANES;
                    vl want, wantr;
                    for (int l = 0; l < LANES; l++)
                        want[l] = (q0 + l < RC && j->tstate[sta[q0 + l]] >= 0) ? -1 : 0;
                    locate_row(tab, ga, want, lst, lva, lvb, loff, lu, lv, luv, inloc);
                    int nrev = 0;
                    for (int l = 0; l < LANES; l++) {
                        /* reverse-biased: the other table, the voltages swapped */
                        wantr[l] = (want[l] && !inloc[q0 + l] && j->rtable && lva[q0 + l] < lvb[q0 + l]) ? -1 : 0;
                        nrev += wantr[l] != 0;
                    }
                    if (nrev) locate_row(j->rtable, ga, wantr, lst, lvb, lva, rloff, rlu, rlv, rluv, rinloc);
                    else for (int l = 0; l < LANES; l++) rinloc[q0 + l] = 0;
                }
                if (ge < 0) continue;
                const int64_t q0 = ge * LANES;
                int done[LANES];
                for (int l = 0; l < LANES; l++) done[l] = 0;
                if (tab) {
                    vd ia = vzero, ib = vzero, J0 = vzero, J1 = vzero, J2 = vzero, J3 = vzero;
                    int nin = 0, nrev = 0;
                    for (int l = 0; l < LANES; l++) { nin += inloc[q0 + l]; nrev += rinloc[q0 + l]; }
                    /* none on the grid (a 1T-1R row at 0 V: its cells reverse-biased): no interpolation */
                    if (nin) {
                        table_interp_lanes(tab, loff + q0, lu + q0, lv + q0, luv + q0, &ia, &ib, &J0, &J1, &J2, &J3);
                        for (int l = 0; l < LANES; l++) {
                            if (!inloc[q0 + l]) continue;
                            double *Jc = cJ + 4 * (q0 + l);
                            Jc[0] = J0[l]; Jc[1] = J1[l]; Jc[2] = J2[l]; Jc[3] = J3[l];
                            lva[q0 + l] = ia[l]; lvb[q0 + l] = ib[l];   /* the currents, in place of the voltages */
                            done[l] = 1;
                        }
                    }
                    if (nrev) {
                        table_interp_lanes(j->rtable, rloff + q0, rlu + q0, rlv + q0, rluv + q0, &ia, &ib, &J0, &J1, &J2, &J3);
                        for (int l = 0; l < LANES; l++) {
                            if (!rinloc[q0 + l]) continue;
                            double *Jc = cJ + 4 * (q0 + l);
                            Jc[0] = -J1[l]; Jc[1] = -J0[l]; Jc[2] = -J3[l]; Jc[3] = -J2[l];
                            lva[q0 + l] = -ia[l]; lvb[q0 + l] = -ib[l];
                            done[l] = 1;
                        }
                    }
                }
                for (int l = 0; l < LANES; l++) {
                    const int64_t q = q0 + l;
                    if (q >= RC || done[l]) continue;
                    const int st = sta[q];
                    double ia, ib;
                    cell_eval(P, j->state[st][0], j->state[st][1], lva[q], lvb[q], &ws[q], &ia, &ib, cJ + 4 * q);
                    lva[q] = ia; lvb[q] = ib;
                }
            }
            if (it == 1)
                for (int64_t q = 0; q < RC; q++) {
                    const cellstart_t *c0 = chord_first ? &cc[sta[q]] : &cs[sta[q]];
                    lva[q] = c0->ia; lvb[q] = c0->ib;
                    memcpy(cJ + 4 * q, c0->J, sizeof(c0->J));
                }
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) {
                    const int64_t q = r * C + c, u = cpl_u(&S, c, r), w = cpl_w(&S, r, c);
                    const double ia = lva[q], ib = lvb[q], *Jc = cJ + 4 * q;
                    if (gate) {   /* a = U: +ia there; b = W: -ib */
                        F[u] += ia; dg[u] += Jc[0]; cUW[q] = Jc[1];
                        F[w] -= ib; dg[w] -= Jc[3]; cWU[q] = -Jc[2];
                    } else {      /* a = W, b = U */
                        F[w] += ia; dg[w] += Jc[0]; cWU[q] = Jc[1];
                        F[u] -= ib; dg[u] -= Jc[3]; cUW[q] = -Jc[2];
                    }
                }
            /* sensed current before the step, where the column's periphery node is held: the current the
               node sends into the array (wires and cells; a held node has no shunt), which its periphery
               feeds it */
            if (j->col_end_fixed)
                for (int64_t c = 0; c < C; c++) {
                    const int64_t i = rb_col * C + c;
                    isense[c] = F[i] - gsh * V[i];
                }
            int bad = 0;
            for (int64_t h = 0; h < S.nheld; h++) { const int64_t i = held[h]; F[i] = V[i] - hold[i]; dg[i] = 1.0; }
            if (S.nheld)
                for (int64_t r = 0; r < R; r++)
                    for (int64_t c = 0; c < C; c++) {
                        const int64_t q = r * C + c;
                        if (fx[cpl_u(&S, c, r)]) cUW[q] = 0.0;
                        if (fx[cpl_w(&S, r, c)]) cWU[q] = 0.0;
                    }
            if (!isfinite(cpl_abssum(F, dg, n) + cpl_abssum(cUW, cWU, RC))) bad = 1;
            if (bad) { status = 2; break; }
            if (!cpl_factor(&S)) { status = 3; break; }
            for (int64_t i = 0; i < n; i++) F[i] = -F[i];
            /* the first step (from the ideal start: the test needs two iterations, so it never converges) solved to
               lin_rtol_first only: 8T-SRAM and 1T-1R bench arrays, 64-256 rows, 2-20 ohm: 7-20 % fewer GMRES
               iterations at 1e-3, the same Newton iterations, the currents within 3.4e-11 of those at lin_rtol */
            lin_total += cpl_gmres(&S, F, d, it == 1 ? j->lin_rtol_first : j->lin_rtol, m, j->gmres_max, KV, KH, gw,
                                   zmem, zmem + n * (m + 1));
            if (!isfinite(cpl_abssum(d, NULL, n))) { status = 2; break; }
            /* the step kept within the voltages the solution can take: every cell and wire is passive and the
               sources are 0 V and v_read, so every node lies in [0, v_read]; a node the step would take more than
               CPL_BOUND_MARGIN v_read beyond is stopped there, then the damping. Where a long step overshoots this
               converges in fewer iterations than shortening the whole step (8T-SRAM, 8 columns, 10 ohm, the bench
               arrays: a mean of 4.72 -> 4.38 Newton iterations at 128 rows, 6.03 -> 4.70 at 256) */
            int64_t clipped = 0;
            for (int64_t i = 0; i < n; i++) {   /* branch-free (vectorised) */
                const double v = V[i], nv = v + d[i];
                const int below = nv < lo_v, above = nv > hi_v;
                d[i] = below ? lo_v - v : (above ? hi_v - v : d[i]);
                clipped += below | above;
            }
            /* a first step that stops more than CPL_RETAKE_FRACTION of the nodes at the bounds: taken again from
               every cell's chord through 0 V (the array a network of resistors, whose solution lies within them).
               The tangent of a saturated cell (8T-SRAM) keeps its current as its voltage falls, and on long lines
               overshoots by several v_read (256 rows, 10 ohm, all inputs 1: 17 v_read); each node stopped leaves
               about one cell off the table's grid in the next iteration (an exact cell, 8-70 tabulated ones' time),
               while the chords' path takes one Newton iteration more (8T-SRAM, 128 and 256 rows, bench arrays) */
            if (it == 1 && (double)clipped > CPL_RETAKE_FRACTION * (double)n && chord_differs && !chord_first) {
                chord_first = 1; it = 0; continue;
            }
            const double dmax = cpl_absmax(d, n);
            const double scale = dmax > j->dv_max_v ? j->dv_max_v / dmax : 1.0;
            int conv = scale == 1.0 && !clipped;
            if (conv) {   /* the node test, branch-free (vectorised; the tolerances in locals, not reloaded) */
                const double rt = j->reltol, vt = j->vntol_v;
                int64_t moved = 0;
                for (int64_t i = 0; i < n; i++) {
                    const double v = V[i], nv = v + scale * d[i], a = fabs(nv), b = fabs(v);
                    moved += fabs(nv - v) > rt * (a > b ? a : b) + vt;
                    V[i] = nv;
                }
                conv = moved == 0;
            } else {
                for (int64_t i = 0; i < n; i++) V[i] = V[i] + scale * d[i];
            }
            /* sensed currents after the step: through the periphery conductance (exact), or, held, the
               flow before the step moved along its derivative (first order, as the decoupled columns) */
            int settled = 1;
            for (int64_t c = 0; c < C; c++) {
                const int64_t i = rb_col * C + c;
                double ip;   /* the current from the periphery into the column's end node */
                if (j->col_end_fixed) {
                    /* its derivative: -g (step of the wire's other node) + the cells' couplings to W */
                    double dflow = 0.0;
                    if (LU > 1) dflow -= S.gc * d[gate ? i + C : i - C];
                    for (int64_t r = 0; r < R; r++) {
                        if (LU > 1 && r != rb_col) continue;
                        const double *Jc = cJ + 4 * (r * C + c);
                        dflow += (gate ? Jc[1] : -Jc[2]) * d[cpl_w(&S, r, c)];
                    }
                    ip = isense[c] + scale * dflow;
                } else {
                    ip = -j->g_col_end_s * (V[i] - (gate ? vr : 0.0));
                }
                /* gate-driven: the sense node's current into the array (and its shunt at v_read);
                   line-driven: the current into the sink */
                const double i_s = gate ? ip + vr * gsh : -ip;
                isense[c] = i_s;
                if (!isfinite(i_s)) { bad = 1; continue; }
                if (isfinite(iprev[c])) {
                    const double dd = fabs(i_s - iprev[c]), tol = j->reltol * fabs(i_s) + j->abstol_a;
                    if (!(dd <= tol || (dd < dprev[c] && dd * dd <= 0.01 * tol * dprev[c]))) settled = 0;
                    dprev[c] = dd;
                } else {
                    settled = 0;
                }
                iprev[c] = i_s;
            }
            if (bad) { status = 2; break; }
            if (conv && settled) { status = 0; break; }
        }
        for (int64_t c = 0; c < C; c++) {
            j->i_out[k * C + c] = status == 0 ? isense[c] : NAN;
            j->status[k * C + c] = status;
            j->iters[k * C + c] = it > j->max_iter ? j->max_iter : it;
        }
        if (j->lin_iters) j->lin_iters[k] = lin_total;
    }
    free(mem);
    free(zmem);
    free(lmem);
    return NULL;
}

int cosim_solve_coupled(const cpl_job_t *job, int nthreads) {
    const int64_t n = job->K;
    nthreads = thread_count(nthreads, n);
    cpl_job_t jobs[64];
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = *job;
        jobs[t].k0 = n * t / nthreads;
        jobs[t].k1 = n * (t + 1) / nthreads;
    }
    run_jobs(jobs, sizeof jobs[0], nthreads, cpl_run);
    return 0;
}

/* The layouts of the structs passed through ctypes: each function writes the struct's size, then the
   offsets of a few fields (in the order cosim/circuit/solver_kernel.py lists them), into out[0..n) and
   returns how many values it has; solver_kernel.py refuses a library whose layouts differ from its own. */
#include <stddef.h>
#define COSIM_LAYOUT(fn, ...)                                                                           \
    int64_t fn(int64_t *out, int64_t n) {                                                               \
        const int64_t v[] = {__VA_ARGS__};                                                              \
        const int64_t m = (int64_t)(sizeof(v) / sizeof(v[0]));                                         \
        for (int64_t i = 0; i < n && i < m; ++i) out[i] = v[i];                                         \
        return m;                                                                                       \
    }
COSIM_LAYOUT(cosim_solver_cellpar_layout, (int64_t)sizeof(cellpar_t), (int64_t)offsetof(cellpar_t, fet),
             (int64_t)offsetof(cellpar_t, nfin), (int64_t)offsetof(cellpar_t, g_inner_shunt_s))
COSIM_LAYOUT(cosim_solver_celltab_layout, (int64_t)sizeof(celltab_t), (int64_t)offsetof(celltab_t, nch),
             (int64_t)offsetof(celltab_t, x0), (int64_t)offsetof(celltab_t, c))
COSIM_LAYOUT(cosim_solver_decjob_layout, (int64_t)sizeof(dec_job_t), (int64_t)offsetof(dec_job_t, x),
             (int64_t)offsetof(dec_job_t, state), (int64_t)offsetof(dec_job_t, v_read_v),
             (int64_t)offsetof(dec_job_t, g_bl_s), (int64_t)offsetof(dec_job_t, g_sl_s),
             (int64_t)offsetof(dec_job_t, max_iter), (int64_t)offsetof(dec_job_t, npairs),
             (int64_t)offsetof(dec_job_t, i_out), (int64_t)offsetof(dec_job_t, table),
             (int64_t)offsetof(dec_job_t, lanes))
COSIM_LAYOUT(cosim_solver_cpljob_layout, (int64_t)sizeof(cpl_job_t), (int64_t)offsetof(cpl_job_t, x),
             (int64_t)offsetof(cpl_job_t, state), (int64_t)offsetof(cpl_job_t, tstate),
             (int64_t)offsetof(cpl_job_t, v_read_v), (int64_t)offsetof(cpl_job_t, g_shunt_s),
             (int64_t)offsetof(cpl_job_t, max_iter), (int64_t)offsetof(cpl_job_t, lin_rtol),
             (int64_t)offsetof(cpl_job_t, lin_rtol_first),
             (int64_t)offsetof(cpl_job_t, k0), (int64_t)offsetof(cpl_job_t, lin_iters),
             (int64_t)offsetof(cpl_job_t, table), (int64_t)offsetof(cpl_job_t, rtable))
