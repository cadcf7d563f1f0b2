/*
 * cosim compiled device models for ngspice's OSDI interface (OSDI 0.3), DC only.
 *
 * Two devices, the same equations as the B-source models in finfet7.lib and reram.lib (the
 * netlist generator uses these when the installed ngspice loads OSDI libraries, and the B-source
 * text otherwise; tests check that both give the same array currents):
 *
 *   cosim_finfet  d g s   7 nm FinFET behavioural model per fin (scripts/fit_finfet.py)
 *       Ids  = nfin K Veff^A (1 + lam|Vds|) tanh(Vds / (C A S u + 2 phit)),   Veff = A S u
 *       u    = ln(1 + exp((Vgs - VT + eta|Vds|) / (A S))),  Vgs from the lower of d, s (NMOS)
 *       pol = +1 NMOS, -1 PMOS (all voltages and the current mirrored).
 *   cosim_reram   a b     ReRAM read model I = I0 exp(-gap/g0) sinh(V(a,b)/V0)
 *   cosim_stack   d g1 g2 s   two cosim_finfet in series (d -g1- m -g2- s, the 8T-SRAM read port) as ONE
 *       device: the inner node m is solved inside the device (safeguarded Newton on the monotone current
 *       balance, to machine precision) and the derivatives follow from the implicit function theorem.
 *       The same circuit as two FETs and a node, without the inner node as a Newton unknown of the
 *       array: a stack that is off (stored 0) no longer slows the array's Newton iteration down.
 *
 * The simulator interface (descriptor layout, flags, the SPICE right-hand side J x_k - F(x_k)) follows
 * the OSDI 0.3 specification (SemiMod); written for cosim, with no code taken from a compiler.
 * Build: cc -O2 -shared -fPIC -o cosim_devices.osdi cosim_devices.c -lm   (cosim.spice.osdi does this).
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the OSDI 0.3 ABI (types and constants used here) ---------------------------------------- */
#define PARA_TY_REAL 0
#define PARA_KIND_MODEL (0u << 30)
#define PARA_KIND_INST (1u << 30)
#define ACCESS_FLAG_SET 1
#define ACCESS_FLAG_INSTANCE 4
#define JACOBIAN_ENTRY_RESIST 4
#define NONE UINT32_MAX

typedef struct { char **names; double *vals; char **names_str; char **vals_str; } OsdiSimParas;
typedef struct {
    OsdiSimParas paras; double abstime; double *prev_solve; double *prev_state; double *next_state;
    uint32_t flags;
} OsdiSimInfo;
typedef struct { uint32_t code; uint32_t parameter_id; } OsdiInitError;
typedef struct { uint32_t flags; uint32_t num_errors; OsdiInitError *errors; } OsdiInitInfo;
typedef struct { uint32_t node_1; uint32_t node_2; } OsdiNodePair;
typedef struct { OsdiNodePair nodes; uint32_t react_ptr_off; uint32_t flags; } OsdiJacobianEntry;
typedef struct {
    char *name; char *units; char *residual_units; uint32_t resist_residual_off;
    uint32_t react_residual_off; uint32_t resist_limit_rhs_off; uint32_t react_limit_rhs_off; bool is_flow;
} OsdiNode;
typedef struct { char **name; uint32_t num_alias; char *description; char *units; uint32_t flags; uint32_t len; } OsdiParamOpvar;
typedef struct { char *name; OsdiNodePair nodes; } OsdiNoiseSource;
typedef struct {
    char *name;
    uint32_t num_nodes, num_terminals; OsdiNode *nodes;
    uint32_t num_jacobian_entries; OsdiJacobianEntry *jacobian_entries;
    uint32_t num_collapsible; OsdiNodePair *collapsible; uint32_t collapsed_offset;
    OsdiNoiseSource *noise_sources; uint32_t num_noise_src;
    uint32_t num_params, num_instance_params, num_opvars; OsdiParamOpvar *param_opvar;
    uint32_t node_mapping_offset, jacobian_ptr_resist_offset;
    uint32_t num_states, state_idx_off;
    uint32_t bound_step_offset;
    uint32_t instance_size, model_size;
    void *(*access)(void *inst, void *model, uint32_t id, uint32_t flags);
    void (*setup_model)(void *handle, void *model, OsdiSimParas *sim_params, OsdiInitInfo *res);
    void (*setup_instance)(void *handle, void *inst, void *model, double temperature,
                           uint32_t num_terminals, OsdiSimParas *sim_params, OsdiInitInfo *res);
    uint32_t (*eval)(void *handle, void *inst, void *model, OsdiSimInfo *info);
    void (*load_noise)(void *inst, void *model, double freq, double *noise_dens, double *ln_noise_dens);
    void (*load_residual_resist)(void *inst, void *model, double *dst);
    void (*load_residual_react)(void *inst, void *model, double *dst);
    void (*load_limit_rhs_resist)(void *inst, void *model, double *dst);
    void (*load_limit_rhs_react)(void *inst, void *model, double *dst);
    void (*load_spice_rhs_dc)(void *inst, void *model, double *dst, double *prev_solve);
    void (*load_spice_rhs_tran)(void *inst, void *model, double *dst, double *prev_solve, double alpha);
    void (*load_jacobian_resist)(void *inst, void *model);
    void (*load_jacobian_react)(void *inst, void *model, double alpha);
    void (*load_jacobian_tran)(void *inst, void *model, double alpha);
} OsdiDescriptor;

/* ---- what every device here shares: a resistive device of up to MAXN terminals -------------------- */
#define MAXN 4
typedef struct {
    uint32_t node_mapping[MAXN];
    double *jac_ptr[MAXN * MAXN];
    bool collapsed[1];
    uint32_t state_idx[1];
    double bound_step;
    double res[MAXN];            /* current leaving each node into the device (A) */
    double jac[MAXN * MAXN];     /* d res / d V of each jacobian entry, in the descriptor's order (S) */
    const OsdiJacobianEntry *entries;    /* the descriptor's jacobian entries (set by setup_instance) */
    uint32_t nn, ne;                     /* its node and entry counts */
} Core;

/* Every instance struct starts with its Core, so one set of loaders serves every device; they walk
   the device's jacobian entries (row node_1, column node_2). */
static void core_shape(Core *c, uint32_t nn, const OsdiJacobianEntry *entries, uint32_t ne) {
    c->nn = nn; c->entries = entries; c->ne = ne;
}
static void core_load_jac(void *inst, void *m) {
    (void)m;
    Core *c = inst;
    for (uint32_t k = 0; k < c->ne; k++) *c->jac_ptr[k] += c->jac[k];
}
static void core_load_jac_tran(void *inst, void *m, double a) { (void)a; core_load_jac(inst, m); }
static void core_load_residual(void *inst, void *m, double *dst) {
    (void)m;
    Core *c = inst;
    for (uint32_t i = 0; i < c->nn; i++) dst[c->node_mapping[i]] += c->res[i];
}
/* SPICE's Newton right-hand side: J x_k - F(x_k) */
static void core_load_rhs_dc(void *inst, void *m, double *dst, double *x) {
    (void)m;
    Core *c = inst;
    const OsdiJacobianEntry *e = c->entries;
    for (uint32_t i = 0; i < c->nn; i++) dst[c->node_mapping[i]] -= c->res[i];
    for (uint32_t k = 0; k < c->ne; k++)
        dst[c->node_mapping[e[k].nodes.node_1]] += c->jac[k] * x[c->node_mapping[e[k].nodes.node_2]];
}
static void core_load_rhs_tran(void *inst, void *m, double *dst, double *x, double a) { (void)a; core_load_rhs_dc(inst, m, dst, x); }
static void no_noise(void *i, void *m, double f, double *d, double *l) { (void)i; (void)m; (void)f; (void)d; (void)l; }
static void no_load(void *i, void *m, double *d) { (void)i; (void)m; (void)d; }
static void no_load_alpha(void *i, void *m, double a) { (void)i; (void)m; (void)a; }
static void ok_init(OsdiInitInfo *res) { res->flags = 0; res->num_errors = 0; res->errors = NULL; }

static double softplus(double z) { return (z > 0 ? z : 0.0) + log1p(exp(-fabs(z))); }
static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* ===================================== cosim_finfet ============================================ */
enum { F_NFIN, F_POL, F_K, F_A, F_VT, F_C, F_S, F_ETA, F_LAM, F_PHIT, F_NPARAM };
static const double F_DEFAULT[F_NPARAM] = {
    1.0, 1.0, 1.2e-4, 1.3, 0.32, 0.39, 0.0271434051, 0.021, 0.1, 0.0256925791,
};
typedef struct { double p[F_NPARAM]; uint32_t given; } FinModel;
typedef struct { Core core; double nfin; uint32_t given; } FinInst;

static char *fn_nfin[] = {"nfin"}, *fn_pol[] = {"pol"}, *fn_k[] = {"k"}, *fn_a[] = {"a"},
            *fn_vt[] = {"vt"}, *fn_c[] = {"c"}, *fn_s[] = {"s"}, *fn_eta[] = {"eta"},
            *fn_lam[] = {"lam"}, *fn_phit[] = {"phit"};
static OsdiParamOpvar FIN_PARAMS[F_NPARAM] = {
    {fn_nfin, 0, "number of fins (current multiplier)", "", PARA_TY_REAL | PARA_KIND_INST, 0},
    {fn_pol, 0, "polarity: +1 NMOS, -1 PMOS", "", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_k, 0, "current factor per fin", "A/V^a", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_a, 0, "alpha-power exponent", "", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_vt, 0, "threshold voltage", "V", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_c, 0, "saturation-voltage factor", "", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_s, 0, "subthreshold slope / ln 10", "V", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_eta, 0, "DIBL coefficient", "V/V", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_lam, 0, "channel-length modulation", "1/V", PARA_TY_REAL | PARA_KIND_MODEL, 0},
    {fn_phit, 0, "thermal voltage", "V", PARA_TY_REAL | PARA_KIND_MODEL, 0},
};
static OsdiNode FIN_NODES[3] = {
    {"d", "V", "A", offsetof(FinInst, core.res) + 0 * sizeof(double), NONE, NONE, NONE, false},
    {"g", "V", "A", offsetof(FinInst, core.res) + 1 * sizeof(double), NONE, NONE, NONE, false},
    {"s", "V", "A", offsetof(FinInst, core.res) + 2 * sizeof(double), NONE, NONE, NONE, false},
};
/* the gate draws no current: only the d and s rows */
#define FIN_NJAC 6
static OsdiJacobianEntry FIN_JAC[FIN_NJAC] = {
    {{0, 0}, NONE, JACOBIAN_ENTRY_RESIST}, {{0, 1}, NONE, JACOBIAN_ENTRY_RESIST}, {{0, 2}, NONE, JACOBIAN_ENTRY_RESIST},
    {{2, 0}, NONE, JACOBIAN_ENTRY_RESIST}, {{2, 1}, NONE, JACOBIAN_ENTRY_RESIST}, {{2, 2}, NONE, JACOBIAN_ENTRY_RESIST},
};

static void *fin_access(void *inst, void *model, uint32_t id, uint32_t flags) {
    if (id >= F_NPARAM) return NULL;
    if (flags & ACCESS_FLAG_INSTANCE) {
        if (id != F_NFIN || !inst) return NULL;
        FinInst *i = inst;
        if (flags & ACCESS_FLAG_SET) i->given |= 1u;
        return &i->nfin;
    }
    if (!model) return NULL;
    FinModel *m = model;
    if (flags & ACCESS_FLAG_SET) m->given |= 1u << id;
    return &m->p[id];
}
static void fin_setup_model(void *h, void *model, OsdiSimParas *sp, OsdiInitInfo *res) {
    (void)h; (void)sp;
    FinModel *m = model;
    for (int k = 0; k < F_NPARAM; k++)
        if (!(m->given & (1u << k))) m->p[k] = F_DEFAULT[k];
    ok_init(res);
}
static void fin_setup_instance(void *h, void *inst, void *model, double t, uint32_t nt, OsdiSimParas *sp,
                               OsdiInitInfo *res) {
    (void)h; (void)t; (void)nt; (void)sp;
    FinInst *i = inst;
    FinModel *m = model;
    if (!(i->given & 1u)) i->nfin = m->p[F_NFIN];
    core_shape(&i->core, 3, FIN_JAC, FIN_NJAC);
    ok_init(res);
}
/* Current d -> s of one fin-model FET at real node voltages, and its derivatives d/dVd, d/dVg, d/dVs. */
static double fet_current(const double *p, double nfin, double Vd, double Vg, double Vs,
                          double *gd_out, double *gg_out, double *gs_out) {
    const double pol = p[F_POL] < 0 ? -1.0 : 1.0;
    /* mirrored voltages: NMOS as is, PMOS negated */
    const double vd = pol * Vd, vg = pol * Vg, vs = pol * Vs;
    const bool d_low = vd < vs;                       /* the lower of d, s is the source */
    const double vgs = vg - (d_low ? vd : vs);
    const double vds = vd - vs, sgn = vds < 0 ? -1.0 : 1.0, avds = fabs(vds);
    const double as = p[F_A] * p[F_S];
    const double z = (vgs - p[F_VT] + p[F_ETA] * avds) / as;
    double u = softplus(z);
    double du_dz = sigmoid(z);
    if (u < 1e-30) { u = 1e-30; du_dz = 0.0; }
    const double pw = pow(as * u, p[F_A]), dpw_du = p[F_A] * pw / u;
    const double l = 1.0 + p[F_LAM] * avds, dl_dvds = p[F_LAM] * sgn;
    const double den = p[F_C] * as * u + 2.0 * p[F_PHIT];
    const double th = tanh(vds / den), sech2 = 1.0 - th * th;
    const double dth_dvds = sech2 / den, dth_du = -sech2 * vds / (den * den) * p[F_C] * as;
    const double kk = nfin * p[F_K];
    const double id = kk * pw * l * th;                /* mirrored current d -> s */
    const double di_du = kk * (dpw_du * l * th + pw * l * dth_du);
    const double du_dvgs = du_dz / as, du_dvds = du_dz * p[F_ETA] * sgn / as;
    const double di_dvgs = di_du * du_dvgs;
    const double di_dvds = kk * pw * (dl_dvds * th + l * dth_dvds) + di_du * du_dvds;
    /* d(pol*id)/d(V) = d(id)/d(mirrored V) since pol*pol = 1 */
    *gd_out = di_dvds + (d_low ? -di_dvgs : 0.0);
    *gg_out = di_dvgs;
    *gs_out = -di_dvds + (d_low ? 0.0 : -di_dvgs);
    return pol * id;
}

static uint32_t fin_eval(void *h, void *inst, void *model, OsdiSimInfo *info) {
    (void)h;
    FinInst *i = inst;
    const double *p = ((FinModel *)model)->p, *x = info->prev_solve;
    const uint32_t *nm = i->core.node_mapping;
    double g_d, g_g, g_s;
    const double id = fet_current(p, i->nfin, x[nm[0]], x[nm[1]], x[nm[2]], &g_d, &g_g, &g_s);
    double *r = i->core.res, *j = i->core.jac;
    r[0] = id; r[1] = 0.0; r[2] = -id;
    j[0] = g_d;  j[1] = g_g;  j[2] = g_s;
    j[3] = -g_d; j[4] = -g_g; j[5] = -g_s;
    return 0;
}

/* ===================================== cosim_stack ============================================= */
/* Same parameters as cosim_finfet (both FETs alike); instance data FinInst plus the last inner voltage. */
typedef struct { FinInst fin; double m_v; bool m_valid; } StackInst;
static OsdiNode STACK_NODES[4] = {
    {"d", "V", "A", offsetof(StackInst, fin.core.res) + 0 * sizeof(double), NONE, NONE, NONE, false},
    {"g1", "V", "A", offsetof(StackInst, fin.core.res) + 1 * sizeof(double), NONE, NONE, NONE, false},
    {"g2", "V", "A", offsetof(StackInst, fin.core.res) + 2 * sizeof(double), NONE, NONE, NONE, false},
    {"s", "V", "A", offsetof(StackInst, fin.core.res) + 3 * sizeof(double), NONE, NONE, NONE, false},
};
/* the gates draw no current: only the d and s rows */
#define STACK_NJAC 8
static OsdiJacobianEntry STACK_JAC[STACK_NJAC] = {
    {{0, 0}, NONE, JACOBIAN_ENTRY_RESIST}, {{0, 1}, NONE, JACOBIAN_ENTRY_RESIST},
    {{0, 2}, NONE, JACOBIAN_ENTRY_RESIST}, {{0, 3}, NONE, JACOBIAN_ENTRY_RESIST},
    {{3, 0}, NONE, JACOBIAN_ENTRY_RESIST}, {{3, 1}, NONE, JACOBIAN_ENTRY_RESIST},
    {{3, 2}, NONE, JACOBIAN_ENTRY_RESIST}, {{3, 3}, NONE, JACOBIAN_ENTRY_RESIST},
};
static void *stack_access(void *inst, void *model, uint32_t id, uint32_t flags) {
    return fin_access(inst ? &((StackInst *)inst)->fin : NULL, model, id, flags);
}
static void stack_setup_instance(void *h, void *inst, void *model, double t, uint32_t nt, OsdiSimParas *sp,
                                 OsdiInitInfo *res) {
    ((StackInst *)inst)->m_valid = false;
    fin_setup_instance(h, &((StackInst *)inst)->fin, model, t, nt, sp, res);
    core_shape(&((StackInst *)inst)->fin.core, 4, STACK_JAC, STACK_NJAC);
}
static uint32_t stack_eval(void *h, void *inst, void *model, OsdiSimInfo *info) {
    (void)h;
    StackInst *st = inst;
    FinInst *i = &st->fin;
    const double *p = ((FinModel *)model)->p, *x = info->prev_solve;
    const uint32_t *nm = i->core.node_mapping;
    const double Vd = x[nm[0]], Vg1 = x[nm[1]], Vg2 = x[nm[2]], Vs = x[nm[3]];
    /* f(m) = I1(Vd, Vg1, m) - I2(m, Vg2, Vs) falls monotonically from f(min(Vd,Vs)) >= 0 to
       f(max(Vd,Vs)) <= 0: bracketed Newton, bisection where Newton leaves the bracket. */
    double lo = Vd < Vs ? Vd : Vs, hi = Vd < Vs ? Vs : Vd;
    double m = (st->m_valid && st->m_v > lo && st->m_v < hi) ? st->m_v : 0.5 * (lo + hi);
    double gd1 = 0, gg1 = 0, gs1 = 0, gd2 = 0, gg2 = 0, gs2 = 0, i1 = 0, i2 = 0;
    for (int it = 0; it < 200; it++) {
        i1 = fet_current(p, i->nfin, Vd, Vg1, m, &gd1, &gg1, &gs1);
        i2 = fet_current(p, i->nfin, m, Vg2, Vs, &gd2, &gg2, &gs2);
        const double f = i1 - i2, fm = gs1 - gd2;
        if (f > 0) lo = m; else hi = m;
        if (fabs(f) <= 1e-13 * (fabs(i1) + fabs(i2)) + 1e-30 || hi - lo <= 1e-15 * (1.0 + fabs(m))) break;
        double next = fm < 0 ? m - f / fm : 0.5 * (lo + hi);
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        m = next;
    }
    st->m_v = m; st->m_valid = true;
    double fm = gs1 - gd2;
    if (fm > -1e-300) fm = -1e-300;
    /* implicit derivatives of m, then of I = I1(Vd, Vg1, m) */
    const double dm_dd = -gd1 / fm, dm_dg1 = -gg1 / fm, dm_dg2 = gg2 / fm, dm_ds = gs2 / fm;
    const double g_d = gd1 + gs1 * dm_dd, g_g1 = gg1 + gs1 * dm_dg1, g_g2 = gs1 * dm_dg2, g_s = gs1 * dm_ds;
    double *r = i->core.res, *j = i->core.jac;
    r[0] = i1; r[1] = 0.0; r[2] = 0.0; r[3] = -i1;
    j[0] = g_d;  j[1] = g_g1;  j[2] = g_g2;  j[3] = g_s;
    j[4] = -g_d; j[5] = -g_g1; j[6] = -g_g2; j[7] = -g_s;
    return 0;
}

/* ===================================== cosim_reram ============================================= */
enum { R_I0, R_G0, R_V0, R_GAP, R_NPARAM };
static const double R_DEFAULT[R_NPARAM] = {61.4e-6, 0.275e-9, 0.43, 0.292e-9};
typedef struct { double p[R_NPARAM]; uint32_t given; } ReModel;
typedef struct { Core core; double p[R_NPARAM]; uint32_t given; } ReInst;

static char *rn_i0[] = {"i0"}, *rn_g0[] = {"g0"}, *rn_v0[] = {"v0"}, *rn_gap[] = {"gap"};
static OsdiParamOpvar RE_PARAMS[R_NPARAM] = {
    {rn_i0, 0, "current prefactor", "A", PARA_TY_REAL | PARA_KIND_INST, 0},
    {rn_g0, 0, "characteristic gap length", "m", PARA_TY_REAL | PARA_KIND_INST, 0},
    {rn_v0, 0, "characteristic voltage", "V", PARA_TY_REAL | PARA_KIND_INST, 0},
    {rn_gap, 0, "filament gap (state: LRS small, HRS large)", "m", PARA_TY_REAL | PARA_KIND_INST, 0},
};
static OsdiNode RE_NODES[2] = {
    {"a", "V", "A", offsetof(ReInst, core.res) + 0 * sizeof(double), NONE, NONE, NONE, false},
    {"b", "V", "A", offsetof(ReInst, core.res) + 1 * sizeof(double), NONE, NONE, NONE, false},
};
#define RE_NJAC 4
static OsdiJacobianEntry RE_JAC[RE_NJAC] = {
    {{0, 0}, NONE, JACOBIAN_ENTRY_RESIST}, {{0, 1}, NONE, JACOBIAN_ENTRY_RESIST},
    {{1, 0}, NONE, JACOBIAN_ENTRY_RESIST}, {{1, 1}, NONE, JACOBIAN_ENTRY_RESIST},
};
static void *re_access(void *inst, void *model, uint32_t id, uint32_t flags) {
    if (id >= R_NPARAM) return NULL;
    if (flags & ACCESS_FLAG_INSTANCE) {
        if (!inst) return NULL;
        ReInst *i = inst;
        if (flags & ACCESS_FLAG_SET) i->given |= 1u << id;
        return &i->p[id];
    }
    if (!model) return NULL;
    ReModel *m = model;
    if (flags & ACCESS_FLAG_SET) m->given |= 1u << id;
    return &m->p[id];
}
static void re_setup_model(void *h, void *model, OsdiSimParas *sp, OsdiInitInfo *res) {
    (void)h; (void)sp;
    ReModel *m = model;
    for (int k = 0; k < R_NPARAM; k++)
        if (!(m->given & (1u << k))) m->p[k] = R_DEFAULT[k];
    ok_init(res);
}
static void re_setup_instance(void *h, void *inst, void *model, double t, uint32_t nt, OsdiSimParas *sp,
                              OsdiInitInfo *res) {
    (void)h; (void)t; (void)nt; (void)sp;
    ReInst *i = inst;
    ReModel *m = model;
    for (int k = 0; k < R_NPARAM; k++)
        if (!(i->given & (1u << k))) i->p[k] = m->p[k];
    core_shape(&i->core, 2, RE_JAC, RE_NJAC);
    ok_init(res);
}
static uint32_t re_eval(void *h, void *inst, void *model, OsdiSimInfo *info) {
    (void)h; (void)model;
    ReInst *i = inst;
    const double *p = i->p, *x = info->prev_solve;
    const uint32_t *nm = i->core.node_mapping;
    const double v = x[nm[0]] - x[nm[1]];
    const double i_pre = p[R_I0] * exp(-p[R_GAP] / p[R_G0]);
    const double cur = i_pre * sinh(v / p[R_V0]), g = i_pre * cosh(v / p[R_V0]) / p[R_V0];
    double *r = i->core.res, *j = i->core.jac;
    r[0] = cur; r[1] = -cur;
    j[0] = g; j[1] = -g; j[2] = -g; j[3] = g;
    return 0;
}

/* ===================================== exported symbols ======================================== */
/* The descriptor fields every device shares; C is the path of the instance's Core (at offset 0). */
#define CORE_OFFSETS(T, C)                                                                       \
    .collapsed_offset = offsetof(T, C.collapsed),                                                \
    .node_mapping_offset = offsetof(T, C.node_mapping),                                          \
    .jacobian_ptr_resist_offset = offsetof(T, C.jac_ptr),                                        \
    .num_states = 0, .state_idx_off = offsetof(T, C.state_idx),                                  \
    .load_residual_resist = core_load_residual, .load_spice_rhs_dc = core_load_rhs_dc,           \
    .load_spice_rhs_tran = core_load_rhs_tran, .load_jacobian_resist = core_load_jac,            \
    .load_jacobian_tran = core_load_jac_tran,                                                    \
    .bound_step_offset = NONE,                                                                   \
    .num_collapsible = 0, .collapsible = NULL, .noise_sources = NULL, .num_noise_src = 0,        \
    .num_opvars = 0, .load_noise = no_noise, .load_residual_react = no_load,                     \
    .load_limit_rhs_resist = no_load, .load_limit_rhs_react = no_load,                           \
    .load_jacobian_react = no_load_alpha

_Static_assert(offsetof(FinInst, core) == 0 && offsetof(StackInst, fin.core) == 0 && offsetof(ReInst, core) == 0,
               "the loaders take an instance for its Core");

uint32_t OSDI_VERSION_MAJOR = 0;
uint32_t OSDI_VERSION_MINOR = 3;
uint32_t OSDI_NUM_DESCRIPTORS = 3;
OsdiDescriptor OSDI_DESCRIPTORS[3] = {
    {
        .name = "cosim_finfet", .num_nodes = 3, .num_terminals = 3, .nodes = FIN_NODES,
        .num_jacobian_entries = FIN_NJAC, .jacobian_entries = FIN_JAC,
        .num_params = F_NPARAM, .num_instance_params = 1, .param_opvar = FIN_PARAMS,
        .instance_size = sizeof(FinInst), .model_size = sizeof(FinModel),
        .access = fin_access, .setup_model = fin_setup_model, .setup_instance = fin_setup_instance,
        .eval = fin_eval,
        CORE_OFFSETS(FinInst, core),
    },
    {
        .name = "cosim_reram", .num_nodes = 2, .num_terminals = 2, .nodes = RE_NODES,
        .num_jacobian_entries = RE_NJAC, .jacobian_entries = RE_JAC,
        .num_params = R_NPARAM, .num_instance_params = R_NPARAM, .param_opvar = RE_PARAMS,
        .instance_size = sizeof(ReInst), .model_size = sizeof(ReModel),
        .access = re_access, .setup_model = re_setup_model, .setup_instance = re_setup_instance,
        .eval = re_eval,
        CORE_OFFSETS(ReInst, core),
    },
    {
        .name = "cosim_stack", .num_nodes = 4, .num_terminals = 4, .nodes = STACK_NODES,
        .num_jacobian_entries = STACK_NJAC, .jacobian_entries = STACK_JAC,
        .num_params = F_NPARAM, .num_instance_params = 1, .param_opvar = FIN_PARAMS,
        .instance_size = sizeof(StackInst), .model_size = sizeof(FinModel),
        .access = stack_access, .setup_model = fin_setup_model, .setup_instance = stack_setup_instance,
        .eval = stack_eval,
        CORE_OFFSETS(StackInst, fin.core),
    },
};
