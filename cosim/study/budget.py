"""The network-level error budget (issue 16): does the surrogate change a network's accuracy?

For one configuration (network, technology, rows, wire resistance, ADC reference, BinSparX, table) the same
images go through the network twice: on the surrogate (cosim.cim.arrays.SurrogateArray) and on a reference,
``exact`` (every column solved by cosim.circuit.solver) or ``certified`` (the surrogate, with every column
within the table's residual margin of an ADC decision level re-solved exactly: cosim.cim.arrays.CertifiedArray).
The result per configuration:

- the per-image correctness of both networks and their paired difference, surrogate minus reference, with
  its 95 % Newcombe interval and the exact McNemar p-value (cosim.study.stats.compare);
- per layer, the ADC code agreement of the surrogate with the reference on the reference network's own
  operands: every column read of the reference network is also read by the surrogate (:class:`PairedArray`)
  and the reads whose codes differ are counted (and, for certified reads, the columns re-solved).

Images are taken class-balanced (stats.balanced_indices) and processed in chunks; each finished chunk is a
JSON file in the run's folder, so an interrupted run continues where it stopped (a folder made for another
configuration is refused). :func:`append_budget_row` adds the result to ``error_budget.csv`` in the columns
that cosim.study.report.load_error_budget reads, followed by the interval, the reference and the provenance.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import InputError
from ..fileio import atomic_path
from . import stats
from .report import BUDGET_COLUMNS, budget_key, row_budget_key

#: references a surrogate network is compared against ("surrogate" and "ideal" are for tests and checks)
REFERENCES = ("exact", "certified", "surrogate", "ideal")
#: the columns of error_budget.csv after report.BUDGET_COLUMNS
EXTRA_COLUMNS = ("delta_low_pp", "delta_high_pp", "mcnemar_p", "accuracy_surrogate", "accuracy_reference",
                 "reference", "prediction_agreement", "min_layer_code_agreement", "code_agreement",
                 "column_reads_compared", "columns_resolved", "seconds_per_image", "table", "table_sha256",
                 "certify_table", "certify_table_sha256", "code_version", "cpu", "seed", "date_utc", "command")


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path, suffix=".part") as tmp:
        tmp.write_text(text)


class PairedArray:
    """An array model that reads with ``reference`` and, on the same operands, with ``probe`` (the
    surrogate): it returns the reference's codes and current, and counts per layer (``layer`` is set by
    :func:`pair_network`'s hooks) the column reads and those whose codes differ, and the columns the reference
    re-solved (a CertifiedArray's ``resolved``). ``sample``: the probe reads a random fraction of each read's
    input vectors only (a costly probe, the exact solver, checking a cheap reference)."""

    exact = False
    linear = False

    def __init__(self, reference, probe, sample: float | None = None, seed: int = 0) -> None:
        if reference.rows != probe.rows or reference.cols != probe.cols:
            raise InputError(f"reference and surrogate arrays differ in size: {reference.rows}x{reference.cols} "
                             f"against {probe.rows}x{probe.cols}")
        self.reference, self.probe = reference, probe
        self.rows, self.cols = reference.rows, reference.cols
        self.max_code = reference.max_code
        self.i_cell_a, self.i_off_a = reference.i_cell_a, reference.i_off_a
        self.layer = ""
        #: probe only this fraction of each read's input vectors (chosen at random; None: all of them)
        self.sample = sample
        self._rng = torch.Generator().manual_seed(seed)
        self.probe_seconds = 0.0           #: time spent in the probe's reads
        #: layer name -> [column reads, reads whose codes differ, columns re-solved by the reference,
        #: differing reads whose probe code lies nearer the column's AND-count (the ideal array's code) than
        #: the reference's, those whose reference code lies nearer, and those whose probe code is the
        #: higher]: whether the surrogate's code errors lean towards the ideal result, and upwards
        self.counts: dict[str, list[int]] = {}

    def read_with_current(self, x_bits: torch.Tensor, w_bits: torch.Tensor):
        before = getattr(self.reference, "resolved", 0)
        rwc = getattr(self.reference, "read_with_current", None)
        codes, cur = rwc(x_bits, w_bits) if rwc is not None else (self.reference.read(x_bits, w_bits), None)
        ref_codes = codes
        if self.sample is not None:
            keep = torch.rand(x_bits.shape[0], generator=self._rng) < self.sample
            x_bits, ref_codes = x_bits[keep.to(x_bits.device)], codes[keep.to(codes.device)]
        t0 = time.perf_counter()
        probe = self.probe.read(x_bits, w_bits)
        self.probe_seconds += time.perf_counter() - t0
        c = self.counts.setdefault(self.layer, [0, 0, 0, 0, 0, 0])
        probe = probe.to(codes.device, codes.dtype)
        n_idx, c_idx = torch.nonzero(probe != ref_codes, as_tuple=True)
        c[0] += int(ref_codes.numel())
        c[1] += int(n_idx.numel())
        c[2] += int(getattr(self.reference, "resolved", 0) - before)
        if n_idx.numel():   # the differing reads only: their AND-counts, and which code lies nearer / higher
            x = x_bits.to(codes.device)[n_idx].to(torch.float64)
            count = (x * w_bits.to(codes.device)[:, c_idx].T.to(torch.float64)).sum(dim=1)
            p_code, r_code = probe[n_idx, c_idx].to(torch.float64), ref_codes[n_idx, c_idx].to(torch.float64)
            d_probe, d_ref = (p_code - count).abs(), (r_code - count).abs()
            c[3] += int((d_probe < d_ref).sum())
            c[4] += int((d_ref < d_probe).sum())
            c[5] += int((p_code > r_code).sum())
        return codes, cur

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor:
        return self.read_with_current(x_bits, w_bits)[0]

    def describe(self) -> dict:
        return {"model": "paired", "reference": self.reference.describe(), "probe": self.probe.describe()}


def pair_network(reference_cim, probe_array) -> PairedArray:
    """Make every CiM layer of ``reference_cim`` read through one PairedArray of its array and
    ``probe_array`` (every read goes through it); a forward pre-hook on each layer names the layer being read. Returns the PairedArray."""
    from ..cim.convert import cim_layers

    layers = cim_layers(reference_cim)
    if not layers:
        raise InputError("the reference network has no CiM layers")
    paired = PairedArray(reference_cim.cim_array if hasattr(reference_cim, "cim_array") else layers[0][1].matrix.array,
                         probe_array)
    for name, m in layers:
        m.matrix.array = paired
        m.matrix.linear = False    # an ideal reference's one-product shortcut would bypass the array's reads

        def hook(_mod, _inp, name=name):
            paired.layer = name
        m.register_forward_pre_hook(hook)
    return paired


def certified_against_exact(net, inputs: torch.Tensor, config, *, sample: float = 0.01, seed: int = 0,
                            certify_table=None) -> dict:
    """Are certified reads the exact solver's? ``net`` on ``inputs`` with certified reads (``config``, a
    surrogate-mode CiMConfig; its table, or ``certify_table``, needs residuals), and on a random ``sample`` of every read's input
    vectors the exact solver's codes too. Returns ``layers`` (per layer: column_reads compared, codes_differ,
    resolved: the columns the certificate re-solved over all vectors), ``seconds`` (all), ``exact_seconds`` and
    ``exact_column_solves`` (the probe's), ``columns_read`` and ``columns_resolved`` (the certified reads'),
    ``certify_safety_counts`` (safety factor -> the ON-counts that take it)."""
    from ..cim import to_cim
    from ..cim.arrays import build_array

    cert: Any = to_cim(net, config.replace(certify=True, certify_table=certify_table))   # a Module with cim_array (a CertifiedArray)
    a, adc = config.array, config.adc
    exact, _ = build_array(mode="exact", tech=a.tech, rows=a.rows, cols=a.cols, table=a.table, adc_bits=adc.bits,
                           adc_reference=adc.reference, adc_lsb_counts=adc.lsb_counts, topology=a.topology)
    paired = pair_network(cert, exact)
    paired.sample, paired._rng = sample, torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        cert(inputs)
    return {"layers": [{"name": k, "column_reads": v[0], "codes_differ": v[1], "resolved": v[2]}
                       for k, v in paired.counts.items()],
            "seconds": time.perf_counter() - t0, "exact_seconds": paired.probe_seconds,
            "exact_column_solves": exact.column_solves, "columns_read": cert.cim_array.columns_read,
            "columns_resolved": cert.cim_array.resolved,
            "certify_safety_counts": cert.cim_array.describe()["certify_safety_counts"]}


@dataclass
class BudgetRun:
    """A configuration's result (:func:`run_budget`)."""

    n: int
    surrogate_correct: np.ndarray
    reference_correct: np.ndarray
    prediction_agreement: float
    #: per layer: name, column_reads, codes_differ, code_agreement, resolved, surrogate_nearer_ideal and
    #: reference_nearer_ideal (of the differing reads, those whose code lies strictly nearer the AND-count),
    #: surrogate_higher (those whose surrogate code is the higher); the last three None for runs whose chunks
    #: predate these counts
    layers: list[dict]
    seconds: float                     #: the chunks computed in this call and those read back (their own times)
    chunks_computed: int
    comparison: stats.Comparison = field(init=False)

    def __post_init__(self) -> None:
        self.comparison = stats.compare(self.surrogate_correct, self.reference_correct)

    @property
    def code_agreement(self) -> float:
        reads = sum(l["column_reads"] for l in self.layers)
        return 1.0 - sum(l["codes_differ"] for l in self.layers) / reads if reads else float("nan")

    @property
    def nearer_ideal(self) -> tuple[int, int] | None:
        """(surrogate, reference): differing column reads whose code lies nearer the ideal AND-count, summed
        over layers; None where a chunk predates these counts."""
        if any(l.get("surrogate_nearer_ideal") is None for l in self.layers):
            return None
        return (sum(l["surrogate_nearer_ideal"] for l in self.layers),
                sum(l["reference_nearer_ideal"] for l in self.layers))

    @property
    def min_layer_code_agreement(self) -> float:
        return min((l["code_agreement"] for l in self.layers), default=float("nan"))

    def summary(self) -> dict:
        c, near = self.comparison, self.nearer_ideal
        return {"n_images": self.n, "accuracy_surrogate": float(self.surrogate_correct.mean()),
                "accuracy_reference": float(self.reference_correct.mean()),
                "delta_pp": 100 * c.diff, "delta_low_pp": 100 * c.low, "delta_high_pp": 100 * c.high,
                "mcnemar_p": c.p, "only_surrogate": c.only_a, "only_reference": c.only_b,
                "prediction_agreement": self.prediction_agreement, "code_agreement": self.code_agreement,
                "min_layer_code_agreement": self.min_layer_code_agreement,
                "column_reads_compared": sum(l["column_reads"] for l in self.layers),
                "columns_resolved": sum(l["resolved"] for l in self.layers),
                "nearer_ideal": None if near is None else dict(zip(("surrogate", "reference"), near)),
                "seconds": self.seconds, "seconds_per_image": self.seconds / self.n if self.n else None,
                "chunks_computed": self.chunks_computed, "layers": self.layers}


def _reference_config(config, reference: str, reference_table=None, certify_table=None):
    if reference not in REFERENCES:
        raise InputError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    kw: dict[str, Any] = {"mode": "surrogate" if reference in ("certified", "surrogate") else reference,
                          "certify": reference == "certified"}
    if reference_table is not None:
        kw["table"] = reference_table
    if certify_table is not None:
        if reference != "certified":
            raise InputError("a certifying table is for the certified reference")
        kw["certify_table"] = certify_table
    return config.replace(**kw)


def _by_content(config: dict) -> dict:
    """A config's dict with its table named by content (sha256), not by where the file lies: the run folder
    is the same run from another checkout or machine (a rerun there continues it)."""
    from ..provenance import sha256_file

    for name in ("table", "certify_table"):
        table = config.get("array", {}).get(name)
        if isinstance(table, str):
            try:
                sha = sha256_file(Path(table))
            except OSError as e:
                raise InputError(f"cannot read the table {table}: {e.strerror or e}") from None
            config = {**config, "array": {**config["array"], name: {"sha256": sha}}}
        elif isinstance(table, dict):
            config = {**config, "array": {**config["array"], name: {"sha256": table.get("sha256")}}}
    return config


def run_budget(net, inputs: torch.Tensor, labels, config, out_dir, *, reference: str = "certified",
               reference_table=None, certify_table=None, index=None, chunk_images: int = 10,
               manifest: dict | None = None, on_chunk: Callable[[int, int], None] | None = None) -> BudgetRun:
    """Classify ``inputs`` (network inputs, (N, ...)) with ``net`` on the surrogate (``config``, a CiMConfig in
    surrogate mode) and on the reference (``config`` with ``reference``'s mode; ``reference_table`` another
    table for it; ``certify_table``: the table that screens the certified reference's columns, so that a
    table without residuals, fitted before cosim recorded them, can be budgeted), ``chunk_images`` images at a time, each chunk saved in ``out_dir`` as it finishes and
    skipped when a rerun finds it. ``index``: the images' dataset indices (stored with each chunk and checked
    on a rerun; default 0..N-1). ``manifest``: what else identifies the run (checked against the folder's).
    ``on_chunk(done, total)`` is called after each chunk."""
    from ..cim import to_cim
    from ..cim.config import CiMConfig

    if not isinstance(config, CiMConfig) or config.array.mode != "surrogate" or config.array.certify:
        raise InputError("the error budget's config must be a CiMConfig in surrogate mode without certified reads")
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n < 1 or inputs.shape[0] != n:
        raise InputError(f"{inputs.shape[0]} inputs for {n} labels")
    index = np.arange(n) if index is None else np.asarray(index, dtype=np.int64)
    if chunk_images < 1:
        raise InputError(f"chunk_images must be >= 1, got {chunk_images}")
    ref_config = _reference_config(config, reference, reference_table, certify_table)
    out = Path(out_dir)
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    ident = {"config": _by_content(config.as_dict()), "reference": reference,
             "reference_config": _by_content(ref_config.as_dict()), **(manifest or {})}
    ident = json.loads(json.dumps(ident, default=str))
    mpath = out / "budget.json"
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        if old != ident:
            diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
            raise InputError(f"{out} holds an error-budget run of another configuration (differs in "
                             f"{', '.join(diff)}); use another folder")
    else:
        atomic_write_text(mpath, json.dumps(ident, indent=1, sort_keys=True) + "\n")

    sur = ref = paired = None
    sur_ok, ref_ok, agree, seconds, computed = [], [], 0, 0.0, 0
    layers: dict[str, list[int]] = {}
    undirected: set[str] = set()     # layers with a chunk that did not count the direction of its codes
    for start in range(0, n, chunk_images):
        stop = min(n, start + chunk_images)
        path = out / "chunks" / f"images_{start:06d}_{stop:06d}.json"
        rec = None
        if path.is_file():
            try:
                rec = json.loads(path.read_text())
                if rec["index"] != index[start:stop].tolist() or rec["labels"] != labels[start:stop].tolist():
                    rec = None
            except (ValueError, KeyError):
                rec = None
        if rec is None:
            if sur is None:
                sur = to_cim(net, config)
                ref = to_cim(net, ref_config)
                paired = pair_network(ref, sur.cim_array)
            assert ref is not None and paired is not None
            paired.counts = {}
            t0 = time.perf_counter()
            with torch.inference_mode():
                x = inputs[start:stop]
                p_sur = sur(x).argmax(dim=1).cpu().numpy()
                p_ref = ref(x).argmax(dim=1).cpu().numpy()
            rec = {"index": index[start:stop].tolist(), "labels": labels[start:stop].tolist(),
                   "pred_surrogate": p_sur.tolist(), "pred_reference": p_ref.tolist(),
                   "layers": {k: v for k, v in paired.counts.items()}, "seconds": time.perf_counter() - t0}
            atomic_write_text(path, json.dumps(rec) + "\n")
            computed += 1
        lab = np.asarray(rec["labels"])
        ps, pr = np.asarray(rec["pred_surrogate"]), np.asarray(rec["pred_reference"])
        sur_ok.append(ps == lab)
        ref_ok.append(pr == lab)
        agree += int((ps == pr).sum())
        seconds += float(rec["seconds"])
        for name, c in rec["layers"].items():
            acc = layers.setdefault(name, [0, 0, 0, 0, 0, 0])
            for i in range(len(c)):
                acc[i] += int(c[i])
            if len(c) < 6:                 # a chunk saved before cosim counted the codes' direction
                undirected.add(name)
        if on_chunk is not None:
            on_chunk(stop, n)
    direction = ("surrogate_nearer_ideal", "reference_nearer_ideal", "surrogate_higher")
    rows = [{"name": k, "column_reads": v[0], "codes_differ": v[1], "resolved": v[2],
             "code_agreement": 1.0 - v[1] / v[0] if v[0] else float("nan"),
             **dict(zip(direction, [None] * 3 if k in undirected else v[3:6]))} for k, v in layers.items()]
    return BudgetRun(n=n, surrogate_correct=np.concatenate(sur_ok), reference_correct=np.concatenate(ref_ok),
                     prediction_agreement=agree / n, layers=rows, seconds=seconds, chunks_computed=computed)


def paired_fields(s: dict) -> dict:
    """The paired statistics of a budget as error_budget.csv writes them, from a summary's ``delta_pp``,
    ``delta_low_pp``, ``delta_high_pp`` (points) and ``mcnemar_p``."""
    return {**{k: f"{s[k]:.2f}" for k in ("delta_pp", "delta_low_pp", "delta_high_pp")},
            "mcnemar_p": f"{s['mcnemar_p']:.4g}"}


def budget_row(result: BudgetRun, *, network: str, technology: str, rows: int, r_wire_ohm: float,
               adc_reference: str, binsparx: bool, reference: str, source: str, provenance: dict) -> dict:
    """One row of error_budget.csv (report.BUDGET_COLUMNS, then EXTRA_COLUMNS) for ``result``."""
    s = result.summary()
    row = {"network": network, "technology": technology, "rows": int(rows), "r_wire_ohm": float(r_wire_ohm),
           "adc_reference": adc_reference, "binsparx": int(bool(binsparx)), "n_images": s["n_images"],
           "source": source, "reference": reference, **paired_fields(s)}
    for k in ("accuracy_surrogate", "accuracy_reference", "prediction_agreement"):
        row[k] = f"{s[k]:.4f}"
    for k in ("min_layer_code_agreement", "code_agreement"):
        row[k] = f"{s[k]:.6f}"
    row["column_reads_compared"] = s["column_reads_compared"]
    row["columns_resolved"] = s["columns_resolved"]
    row["seconds_per_image"] = f"{s['seconds_per_image']:.1f}"
    for k in ("table", "table_sha256", "certify_table", "certify_table_sha256", "code_version", "cpu", "seed",
              "date_utc", "command"):
        row[k] = provenance.get(k, "")
    return row


def with_current_statistics(run: dict) -> dict:
    """A run's result.json (``run``) with its paired statistics (difference, interval, McNemar p, discordant
    counts, the comparison's text) recomputed from its per-image outcomes by this code's cosim.study.stats, so that
    runs written before a change of the statistics read as new ones do. A run without outcomes is returned as is."""
    r = run.get("result", {})
    try:
        n = int(r["n_images"])
        c = stats.compare(stats.unpack_bits(r["surrogate_correct"], n), stats.unpack_bits(r["reference_correct"], n))
    except (KeyError, ValueError, TypeError):
        return run
    return {**run, "comparison": c.text(),
            "result": {**r, "delta_pp": 100 * c.diff, "delta_low_pp": 100 * c.low, "delta_high_pp": 100 * c.high,
                       "mcnemar_p": c.p, "only_surrogate": c.only_a, "only_reference": c.only_b}}


def refresh_budget_rows(path, runs: list[dict]) -> int:
    """Rewrite the statistics of the rows of the error-budget CSV at ``path`` that ``runs`` (result.json dicts,
    ``with_current_statistics``) measured (same configuration, reference and table), in place and in order;
    returns how many rows changed."""
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        names, rows = list(reader.fieldnames or []), list(reader)
    by_key = {}
    for run in runs:
        c, s, prov = run["configuration"], run["result"], run.get("provenance", {})
        key = (budget_key(c["network"], c["technology"], c["rows"], c["r_wire_ohm"], c["adc_reference"],
                          c["binsparx"]), c.get("reference", ""), prov.get("table_sha256", ""))
        by_key[key] = paired_fields(s)
    changed = 0
    for row in rows:
        try:
            new = by_key.get((row_budget_key(row), row.get("reference") or "", row.get("table_sha256") or ""))
        except (KeyError, ValueError):
            continue
        if new and any(row.get(k) != v for k, v in new.items()):
            row.update(new)
            changed += 1
    if changed:
        _write_rows(path, names, rows)
    return changed


def _write_rows(path: Path, names: list[str], rows: list[dict]) -> None:
    """The CSV ``rows`` (their ``names`` columns, missing ones empty) written to ``path`` atomically."""
    lines: list[str] = []

    class _Sink:
        def write(self, s):
            lines.append(s)

    w = csv.DictWriter(_Sink(), fieldnames=names, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in names})
    atomic_write_text(path, "".join(lines))


def append_budget_row(path, row: dict) -> Path:
    """Add ``row`` to the error-budget CSV at ``path`` (made if absent), replacing a row of the same
    configuration, reference and table. Rows written by report.write_error_budget (no extra columns) are kept."""
    missing = [c for c in BUDGET_COLUMNS if c not in row]
    if missing:
        raise InputError(f"error budget row lacks {', '.join(missing)}")
    if row["adc_reference"] not in ("ideal", "calibrated"):
        raise InputError("error budget row: adc_reference must be 'ideal' or 'calibrated'")
    float(row["delta_pp"])

    def key(r):
        return row_budget_key(r), r.get("reference") or "", r.get("table_sha256") or ""

    path = Path(path)
    rows: list[dict] = []
    if path.is_file():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f)]
    rows = [r for r in rows if key(r) != key(row)] + [row]
    _write_rows(path, list(BUDGET_COLUMNS) + list(EXTRA_COLUMNS), rows)
    return path


# ------------------------------------------------------------------------------------------- the report section

SECTION_BEGIN = "<!-- error budget: begin (generated by scripts/error_budget.py --write-section) -->"
SECTION_END = "<!-- error budget: end -->"
#: the study's grid of configurations (issue 16; configs/study.toml): networks, technologies, rows, wire ohm,
#: ADC references, BinSparX
GRID = (("vgg-small", "resnet18"), ("sram8t", "reram1t1r"), (64, 128, 256), (2.0, 5.0, 10.0, 20.0),
        ("ideal", "calibrated"), (False, True))


def _pp(x: float) -> str:
    return f"{x:+.2f}"


def configuration_of(result: dict) -> tuple:
    """(network, technology, rows, wire ohm, ADC reference, BinSparX) of a run's result.json."""
    c = result["configuration"]
    return (c["network"], c["technology"], int(c["rows"]), float(c["r_wire_ohm"]), c["adc_reference"],
            bool(c["binsparx"]))


def check_configuration(check: dict) -> dict:
    """network, technology, rows and ADC reference of a check_exact.json: its ``configuration``, else read
    from the command it records (checks written before the field)."""
    import shlex

    if "configuration" in check:
        return check["configuration"]
    argv = shlex.split(check["provenance"]["command"])
    opt = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    return {"network": opt.get("--model", "vgg-small"), "technology": opt.get("--tech", "sram8t"),
            "rows": int(opt.get("--rows", 64)), "adc_reference": opt.get("--adc-reference", "ideal"),
            "binsparx": "--binsparx" in argv}


def check_safety(check: dict) -> str:
    """The safety factor(s) of a check's certified reads on its well-sampled counts (the factor most counts
    take); checks written before check_exact.json recorded it ran with 0.5, the default until ad9efd4."""
    counts = check.get("certify_safety_counts")
    if not counts:
        return "0.5"
    return max(counts, key=lambda f: counts[f])


def _checks_markdown(checks: list[dict]) -> list[str]:
    L = ["**Reference: certified reads.** A certified read is the surrogate's code except for the columns "
         "whose surrogate current lies within the table's safety factor times its largest calibration residual "
         "(in the column's ON-count band and the bands beside it) of an ADC decision level: those are re-solved "
         "by the exact solver (the margin's rule and cost: \"Certified reads\" below). A table that records no "
         "residuals (one fitted before cosim recorded them) is certified through another table of the same "
         "circuit that does (`--certify-table`): its currents and residuals choose the columns to re-solve, the "
         "codes keep the first table's decision levels."]
    if not checks:
        return L + [""]
    checks = sorted(checks, key=lambda ch: (*(str(check_configuration(ch)[k]) for k in
                                              ("network", "technology", "rows", "adc_reference")), check_safety(ch)))
    L[0] += (" Certified reads against `--mode exact` (`scripts/error_budget.py --check-exact FRACTION`: certified "
             "reads of every layer, and the exact solver's codes on a random FRACTION of every read's input "
             "vectors), each on its table:")
    L += ["", "| network | technology | rows | ADC reference | table | safety factor | images | sample | column reads "
              "compared | codes that differ | per million | re-solved by the certificate | exact solves/s | wall s |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ch in checks:
        c, p = check_configuration(ch), ch["provenance"]
        reads, differ = ch["column_reads_compared"], ch["codes_differ"]
        rate = ch["exact_column_solves"] / ch["exact_seconds"] if ch["exact_seconds"] else float("nan")
        L.append(f"| {c['network']} | {c['technology']} | {c['rows']} | {c['adc_reference']} | "
                 f"{Path(p['table']).name} ({p['table_sha256'][:8]}) | {check_safety(ch)} | {len(ch['images'])} | "
                 f"{100 * ch['sample']:.0f} % | {reads:,} | {differ} | {1e6 * differ / max(reads, 1):.1f} | "
                 f"{100 * ch['columns_resolved'] / max(ch['columns_read'], 1):.1f} % | {rate:,.0f} | "
                 f"{ch['wall_seconds']:.0f} |")
    reads = sum(ch["column_reads_compared"] for ch in checks)
    differ = sum(ch["codes_differ"] for ch in checks)
    worst = max(1e6 * ch["codes_differ"] / max(ch["column_reads_compared"], 1) for ch in checks)
    L += ["", f"In all: **{differ} of {reads:,} column reads differ** ({1e6 * differ / max(reads, 1):.1f} per million; "
              f"at most {worst:.1f} per million in one check, against the target's 100). CPU "
              + ", ".join(sorted({ch["provenance"].get("cpu", "?") for ch in checks})) + ", code "
              + ", ".join(sorted({str(ch["provenance"].get("code_version", "?")) for ch in checks})) + ", "
              + ", ".join(sorted({str(ch["provenance"].get("date_utc", "?"))[:10] for ch in checks}))
              + ". Commands:", "", "<details><summary>the checks' commands</summary>", ""]
    L += [f"    {ch['provenance']['command']}" for ch in checks]
    return L + ["", "</details>", ""]


def _label(r: dict) -> str:
    n, t, rows, rw, a, b = configuration_of(r)
    return f"{n} {t} {rows} rows {rw:g} Ω {a}{' +BinSparX' if b else ''}"


def _direction_markdown(results: list[dict], direction: list[dict]) -> list[str]:
    """Which way the surrogate's differences from the reference lean: the sign of the accuracy differences
    across ``results`` (a sign test), and, for the runs that counted it (``direction`` and any of ``results``),
    the direction of the differing ADC codes (nearer the ideal AND-count? higher?)."""
    up = [r for r in results if r["result"]["delta_pp"] > 1e-9]
    down = [r for r in results if r["result"]["delta_pp"] < -1e-9]
    only_s = sum(int(r["result"].get("only_surrogate", 0)) for r in results)
    only_r = sum(int(r["result"].get("only_reference", 0)) for r in results)
    L = ["", f"Which way the differences lean. The surrogate's accuracy is above the reference's in {len(up)} of "
             f"{len(results)} configurations and below it in {len(down)} (equal in {len(results) - len(up) - len(down)}; "
             f"two-sided sign test over the configurations p = {stats.mcnemar_exact_counts(len(up), len(down)):.2g}); "
             f"the images only one of the two networks classifies correctly, summed over the configurations: "
             f"{only_s:,} for the surrogate, {only_r:,} for the reference (the configurations share images and "
             "tables, so this sum is not an independent test)."]
    rows = [r for r in [*direction, *results] if r["result"].get("nearer_ideal")]
    if not rows:
        return L
    L[-1] += (" At the level of ADC codes, every column read in which the surrogate's code differs from the "
              "reference's: is the surrogate's code the one nearer the column's AND-count (the ideal array's "
              "code), and is it the higher one? An ideal ADC reference reads non-ideal currents low, so there a "
              "higher code is a nearer one.")
    L += ["", "| configuration | images | accuracy surrogate / reference | differing column reads | surrogate's code "
              "nearer the AND-count | reference's nearer | surrogate's code higher |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["result"]
        differ = sum(int(l["codes_differ"]) for l in s["layers"])
        higher = sum(int(l["surrogate_higher"]) for l in s["layers"])
        near = s["nearer_ideal"]
        L.append(f"| {_label(r)} | {s['n_images']} | {100 * s['accuracy_surrogate']:.1f} % / "
                 f"{100 * s['accuracy_reference']:.1f} % | {differ:,} | {100 * near['surrogate'] / max(differ, 1):.1f} % | "
                 f"{100 * near['reference'] / max(differ, 1):.1f} % | {100 * higher / max(differ, 1):.1f} % |")
    differ = sum(int(l["codes_differ"]) for r in rows for l in r["result"]["layers"])
    nearer = sum(int(r["result"]["nearer_ideal"]["surrogate"]) for r in rows)
    share = nearer / max(differ, 1)
    L += ["", f"Pooled over these runs the surrogate's code is the nearer one in {100 * share:.1f} % of "
              f"{differ:,} differing reads: "
              + ("its code errors do not lean towards the ideal result, so they do not explain an accuracy above "
                 "the reference's; a lean in accuracy across configurations that share images and tables may be "
                 "chance, which more configurations will tell." if share <= 0.5 else
                 "its code errors lean towards the ideal result, which would raise its accuracy above the "
                 "reference's.")]
    L += ["", "<details><summary>these runs' commands</summary>", ""]
    L += [f"    {r['provenance']['command']}" for r in rows]
    return L + ["", "</details>"]


def _two_discordant_half_width(n_images: int) -> float:
    """The narrowest half-width of the paired 95 % interval (cosim.study.stats.newcombe_paired) on ``n_images``
    images when the two networks disagree on exactly two of them, one each way, over accuracies 5-95 %."""
    widths = []
    for acc in np.linspace(0.05, 0.95, 19):
        both = int(round(acc * n_images)) - 1
        d, lo, hi = stats.newcombe_paired(both, 1, 1, n_images - both - 2)
        widths.append(max(hi - d, d - lo))
    return float(min(widths))


def section_markdown(results: list[dict], checks: list[dict] | dict | None, *, conditions: str,
                     images_target: int = 500, direction: list[dict] | None = None) -> str:
    """The "End-to-end fidelity" section of docs/VALIDATION.md from the error-budget runs (``results``, their
    result.json), the certified-against-exact checks (check_exact.json files) and a sentence on the machine's
    load (``conditions``), between SECTION_BEGIN and SECTION_END. ``direction``: shorter runs (result.json)
    that counted which way their differing codes lean, shown with the budgets' sign test."""
    if isinstance(checks, dict):
        checks = [checks]
    results = sorted(results, key=lambda r: (GRID[0].index(r["configuration"]["network"])
                                             if r["configuration"]["network"] in GRID[0] else 9,
                                             configuration_of(r)[1:]))
    L = [SECTION_BEGIN, "", "## End-to-end fidelity", "",
         "Does the surrogate change a network's accuracy (issue 16)? Each configuration below ran the same "
         "class-balanced CIFAR-10 test images through the network twice, on the surrogate and on a reference "
         "(`cosim.study.budget`, `scripts/error_budget.py`), and compares per image: the paired difference of "
         "top-1 accuracy (surrogate minus reference, 95 % Newcombe interval, exact McNemar p) and, per layer, "
         "the ADC code agreement of the surrogate with the reference on the reference network's own operands "
         "(every column read of the reference network read by the surrogate too). Targets: |difference| <= 0.5 "
         "points, per-layer code agreement >= 99.5 %. The study's report (`cosim report`: docs/REPORT.md) prints each "
         "configuration's budget, the farther end of this interval, beside its accuracy.", ""]
    L += _checks_markdown(list(checks or []))
    L += ["| network | technology | rows | wire (Ω) | ADC reference | BinSparX | table | images | surrogate | "
          "reference | difference (points) [95 %] | McNemar p | same top-1 class | code agreement | lowest layer | "
          "re-solved | s/image |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    tables: dict[str, str] = {}     # sha256 -> how the section names the table

    def short(path: str, sha: str) -> str:
        return tables.setdefault(sha, f"{Path(path).name} ({sha[:8]})")
    done = set()
    for r in results:
        c, s = r["configuration"], r["result"]
        done.add(configuration_of(r))
        L.append(f"| {c['network']} | {c['technology']} | {c['rows']} | {float(c['r_wire_ohm']):g} | "
                 f"{c['adc_reference']} | {'on' if c['binsparx'] else 'off'} | "
                 f"{short(r['provenance']['table'], r['provenance']['table_sha256'])} | {s['n_images']} | "
                 f"{100 * s['accuracy_surrogate']:.1f} % | {100 * s['accuracy_reference']:.1f} % ({c['reference']}"
                 + (f", screened by {short(r['provenance']['certify_table'], r['provenance']['certify_table_sha256'])}"
                    if r["provenance"].get("certify_table") else "") + ") | "
                 f"{_pp(s['delta_pp'])} [{_pp(s['delta_low_pp'])}, {_pp(s['delta_high_pp'])}] | "
                 f"{s['mcnemar_p']:.3g} | {100 * s['prediction_agreement']:.1f} % | "
                 f"{100 * s['code_agreement']:.3f} % | {100 * s['min_layer_code_agreement']:.3f} % | "
                 f"{100 * s['columns_resolved'] / max(s['column_reads_compared'], 1):.1f} % | "
                 f"{s['seconds_per_image']:.1f} |")
    if results:
        def names(rs) -> str:
            return "; ".join(_label(r) for r in rs) or "none"
        shown = [r for r in results if -0.5 <= r["result"]["delta_low_pp"] and r["result"]["delta_high_pp"] <= 0.5]
        point = [r for r in results if abs(r["result"]["delta_pp"]) <= 0.5]
        signif = [r for r in results if r["result"]["delta_low_pp"] > 0 or r["result"]["delta_high_pp"] < 0]
        layers_low = [r for r in results if r["result"]["min_layer_code_agreement"] < 0.995]
        chance = [r for r in results if max(r["result"]["accuracy_surrogate"], r["result"]["accuracy_reference"]) <= 0.15]
        L += ["", f"Targets. |difference| <= 0.5 points: the point estimate within ±0.5 in {len(point)} of "
                  f"{len(results)} configurations, the whole 95 % interval within ±0.5 (shown) in {len(shown)} "
                  f"({names(shown)}): on {images_target} images one image classified differently each way already "
                  f"gives an interval of ±{100 * _two_discordant_half_width(images_target):.2f} points or wider, "
                  f"±{100 * _two_discordant_half_width(2 * images_target):.2f} on {2 * images_target:,} (95 % "
                  "Newcombe interval, narrowest over the accuracies). Significant differences (the interval excludes 0): "
                  f"{len(signif)} ({names(signif)}). Per-layer code agreement >= 99.5 % in every layer: "
                  f"{len(results) - len(layers_low)} of {len(results)}; below it in some layer: {names(layers_low)}."]
        if chance:
            L += ["", f"At chance (<= 15 % top-1 on both): {names(chance)}; there the difference in accuracy says "
                      "only that both fail, and the code agreement is the informative number."]
        L += _direction_markdown(results, list(direction or []))
        L += ["", "<details><summary>per-layer code agreement of every configuration</summary>", ""]
        for r in results:
            s = r["result"]
            L += [f"- {_label(r)} ({s['n_images']} images): "
                  + ", ".join(f"{l['name']} {100 * l['code_agreement']:.3f} % ({l['codes_differ']:,} of "
                              f"{l['column_reads']:,})" for l in s["layers"]) + "."]
        L += ["", "</details>"]
        paths = {}
        for r in results:
            p = r["provenance"]
            paths[p["table_sha256"]] = p["table"]
            if p.get("certify_table"):
                paths[p["certify_table_sha256"]] = p["certify_table"]
        L += ["", "Tables: " + "; ".join(f"{tables[sha]}: `{path}`, sha256 {sha[:16]}…" for sha, path in paths.items())
              + ". Runs: CPU " + ", ".join(sorted({r["provenance"]["cpu"] for r in results})) + ", code "
              + ", ".join(sorted({r["provenance"]["code_version"] for r in results})) + ", "
              + ", ".join(sorted({r["provenance"]["date_utc"][:10] for r in results})) + f"; {conditions}", "",
              "<details><summary>the runs' commands</summary>", ""]
        L += [f"    {r['provenance']['command']}" for r in results]
        L += ["", "</details>"]
        grid = [(n, t, ro, rw, a, b) for n in GRID[0] for t in GRID[1] for ro in GRID[2] for rw in GRID[3]
                for a in GRID[4] for b in GRID[5]]
        left = [g for g in grid if g not in done]
        per_rows = []
        for ro in GRID[2]:
            n_left = sum(1 for g in left if g[2] == ro)
            rates = [r["result"]["seconds_per_image"] for r in results if configuration_of(r)[2] == ro]
            cost = (f", at most {max(rates):.1f} s per image measured at this size, i.e. up to "
                    f"{n_left * images_target * max(rates) / 3600:,.1f} core-hours" if rates and n_left else
                    (", not yet timed" if n_left else ""))
            per_rows.append(f"{ro} rows: {n_left}{cost}")
        L += ["", f"**Not yet measured:** {len(left)} of the {len(grid)} configurations of the study's grid "
                  f"({', '.join(GRID[0])}; {', '.join(GRID[1])}; {', '.join(map(str, GRID[2]))} rows; "
                  f"{', '.join(f'{x:g}' for x in GRID[3])} Ω; ideal and calibrated references; with and without "
                  f"BinSparX) on {images_target} images: " + "; ".join(per_rows) + ". A run's cost grows with the "
                  "share of reads the certificate re-solves, which is largest with calibrated references at 128 "
                  "and 256 rows (their fragile counts, above)."]
    L += ["", SECTION_END]
    return "\n".join(L)


def replace_section(text: str, section: str) -> str:
    """``text`` with its error-budget section replaced by ``section`` (appended where it has none)."""
    if SECTION_BEGIN in text and SECTION_END in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        return head + section + rest.split(SECTION_END, 1)[1]
    return text.rstrip("\n") + "\n\n" + section + "\n"
