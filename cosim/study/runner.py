"""Run grid cells, each cached on disk with its provenance.

A cell's result is one JSON file ``<cache>/cells/<key>.json``. The key is a SHA-256 of everything that
determines the result: the cell (network, variant, technology, array size, wire resistance, ADC bits,
partial-wordline rows, number of images, seed), the SHA-256 of the weights file, of the test images and
labels used, of the lookup table used, and of the source of the code that computes it (cosim.cim, the
surrogate, the ADC, the tables, the BNN layers and models, this module). A finished cell is never
recomputed; an interrupted run resumes where it stopped (files are written atomically, so a killed run
leaves no half cell). An array cell's images after the first chunk run in parts of ``PART_IMAGES``; each
finished part is kept beside the cache (``<cache>/parts/<key>_<start>-<stop>.json``: its per-image outcomes,
the array statistics its images added and, for certified reads, the columns it read and re-solved), so an
interrupted long cell (10,000 images, or certified reads) resumes from its last finished part with the same
result, statistics and energy as an uninterrupted run; the parts are removed once the cell's result is
cached. A cell that cannot run (no calibrated
table for its wire resistance, say) is reported as not run, with the reason, and is not cached, so it
runs once its inputs exist.

Every cell of a run evaluates the same ``limit`` test images in the same order (class-balanced:
``stats.balanced_indices``) and keeps its per-image correctness (``correct_bits``, ``image_ranges``), so
variants are compared image by image. It runs them in two chunks, the first ``stats.CHANCE_MIN_IMAGES``
images and the rest, and stops after the first where the cell is at chance (``stats.at_chance``), which
its result records (``stopped_at_chance``, ``n`` of ``n_planned``).

The CiM side goes through issue 5's drop-in API (``cosim.cim.to_cim`` / ``cim_stats``); the thin
adapter below adds what the study needs around it and says where: the mirrored (-1 conducting) encoding
is a model transform (``MirroredBinConv2d``: both operands negated, the product unchanged), and the
lookup table for a wire resistance is found by checking each table's calibration provenance.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ..bnn.layers import BinConv2d
from ..errors import CosimError, DataError, InputError, TableError
from ..fileio import describe_os_error
from ..paths import PACKAGE_DIR, cache_dir, resources_dir
from ..provenance import cpu_model, json_default, record, sha256_file
from . import stats
from .config import Cell, StudyConfig

CACHE_FORMAT = 1
#: modules whose source determines a cell's result (hashed into its key), relative to the package
KEY_SOURCES = ("cim", "surrogate/evaluate.py", "surrogate/kernel.py", "surrogate/kernel.c", "surrogate/model.py",
               "surrogate/adc.py", "surrogate/tables.py", "products.py", "circuit/technology.py", "circuit/cells.py",
               "circuit/devices.py", "resources/technologies", "bnn/layers.py", "bnn/models.py", "bnn/quant.py",
               "bnn/evaluate.py", "study/runner.py", "study/stats.py")
#: modules a cell's computation imports whose source does not change its result, and why
#: (tests/test_layout.py: every other module it imports must be in KEY_SOURCES)
KEY_EXEMPT = {
    "bnn/datasets.py": "the test images are keyed by their SHA-256 (data_sha256)",
    "surrogate/registry.py": "finds the table, which is keyed by its SHA-256 (table_sha256)",
    "study/config.py": "the cell's fields are the payload",
    "circuit/netlist.py": "used by the exact and certified modes only, which the study does not run",
    "circuit/solver_kernel.py": "used by the exact and certified modes only, which the study does not run",
    "cbuild.py": "compiles the kernels (their source is keyed); a failed build falls back to the same model in torch",
    "errors.py": "error types", "fileio.py": "file writing", "paths.py": "folder names",
    "provenance.py": "records provenance",
}
#: files of these kinds in a KEY_SOURCES folder are hashed
KEY_SUFFIXES = (".py", ".c", ".toml")
SKEW_SOURCES = ("bnn/layers.py", "bnn/models.py", "study/skew.py")


# ------------------------------------------------------------------------------------------- hashing

def sha256_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@lru_cache(maxsize=8)
def source_hash(parts: tuple[str, ...] = KEY_SOURCES) -> str:
    """SHA-256 of the source text of ``parts`` (files, or folders of KEY_SUFFIXES files, under the package)."""
    h = hashlib.sha256()
    for part in parts:
        p = PACKAGE_DIR / part
        files = sorted(f for f in p.rglob("*") if f.suffix in KEY_SUFFIXES) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(PACKAGE_DIR)).encode())
            h.update(f.read_bytes() if f.is_file() else b"<missing>")
    return h.hexdigest()


def make_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


# ------------------------------------------------------------------------------------------- storage

#: the reason of cells left unrun because the cell cache could not take a result
CACHE_FAULT = "not run: the cell cache cannot be written"


class CellStore:
    """Cell results as JSON files under ``root`` (``<root>/<kind>/<key>.json``): records of the one result
    store (``cosim.sweep.store``), written atomically; a damaged one is reported and recomputed."""

    def __init__(self, root: str | Path) -> None:
        from ..sweep.store import ResultStore
        self.root = Path(root)
        self.store = ResultStore(self.root, "{kind}/{key}.json", json_default=json_default)

    def path(self, key: str, kind: str = "cells") -> Path:
        return self.store.path(kind, key)

    def get(self, key: str, kind: str = "cells") -> dict | None:
        rec = self.store.get(kind, key)
        return None if rec is None else rec.meta

    def put(self, key: str, obj: dict, kind: str = "cells") -> Path:
        return self.store.put(kind, key, meta=obj)


# ------------------------------------------------------------------------------------------- context

@dataclass
class StudyContext:
    """What the cells share: weights, test images, tables. Loaded lazily, once."""

    config: StudyConfig
    _models: dict = field(default_factory=dict)
    _data: tuple | None = None
    _tables: dict = field(default_factory=dict)

    @property
    def cache_root(self) -> Path:
        return Path(self.config.cache).expanduser() if self.config.cache else cache_dir() / "study"

    def model_path(self, network: str) -> Path:
        from ..bnn.models import REFERENCE_FILES, reference_path
        return Path(self.config.models) / REFERENCE_FILES[network] if self.config.models else reference_path(network)

    def model(self, network: str) -> tuple[torch.nn.Module, str]:
        if network not in self._models:
            from ..bnn.models import load_reference
            p = self.model_path(network)
            m = load_reference(network, p)
            self._models[network] = (m, sha256_file(p))
        return self._models[network]

    def data(self) -> tuple[np.ndarray, np.ndarray, str, str]:
        """(images, labels, data sha of the ``limit`` study images, source) of the test split."""
        if self._data is None:
            from ..bnn.datasets import load_cifar10, resolve_data_path
            src = resolve_data_path(self.config.data or None)
            images, labels = load_cifar10(src, split="test")
            n = min(self.config.limit, len(labels))
            if n < self.config.limit:
                raise DataError(f"the test set at {src} has {len(labels)} images, the study asks for {self.config.limit}")
            self._data = (images, labels, _data_sha(images, labels, self.indices(labels)), str(src))
        return self._data

    def with_limit(self, limit: int) -> "StudyContext":
        """A context for the same study on ``limit`` images (the claims' cells), sharing the loaded weights,
        test images and tables."""
        new = StudyContext(dataclasses.replace(self.config, limit=limit), _models=self._models, _tables=self._tables)
        if self._data is not None:
            images, labels, _, src = self._data
            if limit > len(labels):
                raise DataError(f"the test set at {src} has {len(labels)} images, the study asks for {limit}")
            new._data = (images, labels, _data_sha(images, labels, new.indices(labels)), src)
        return new

    def indices(self, labels: np.ndarray | None = None) -> np.ndarray:
        """Indices into the loaded test split of the study's ``limit`` images, in evaluation order: class-
        balanced round robin (``stats.balanced_indices``); the same for every cell and variant."""
        if labels is None:
            labels = self.data()[1]
        return stats.balanced_indices(labels, min(self.config.limit, len(labels)))

    def table_for(self, cell: Cell) -> tuple[Any, str, str]:
        """(table, path, sha256) calibrated for the cell's technology, rows and wire resistance."""
        k = (cell.technology, cell.rows, cell.r_wire_ohm)
        if k not in self._tables:
            try:
                self._tables[k] = find_table(cell.technology, cell.rows, cell.r_wire_ohm, self.table_dirs())  # type: ignore[arg-type]  # a CiM cell: all set
            except TableError as e:
                self._tables[k] = e  # missing for every cell of this key: search the folders once
        found = self._tables[k]
        if isinstance(found, TableError):
            raise found
        return found

    def table_dirs(self) -> list[Path]:
        dirs = [resources_dir() / "tables", self.cache_root / "tables"]
        return [d for d in dirs if d.is_dir()]


def _data_sha(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> str:
    """SHA-256 of the study's images and labels; an identity index (class-interleaved loading) keys the
    data exactly as before per-image outcomes were kept (images[:n]), so older cached cells still match."""
    n = len(idx)
    return sha256_arrays(*((images[:n], labels[:n]) if _is_prefix(idx) else (images[idx], labels[idx])))


def _is_prefix(idx: np.ndarray) -> bool:
    return bool(len(idx) == 0 or (idx[0] == 0 and np.array_equal(idx, np.arange(len(idx)))))


def index_ranges(idx) -> list[list[int]]:
    """Image indices as half-open ranges ``[[start, stop], ...]`` (one range for a prefix)."""
    out: list[list[int]] = []
    for i in map(int, idx):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def expand_ranges(ranges) -> np.ndarray:
    """The inverse of ``index_ranges``."""
    parts = [np.arange(int(a), int(b), dtype=np.int64) for a, b in ranges]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def find_table(tech_name: str, rows: int, r_wire_ohm: float, dirs: Iterable[Path]) -> tuple[Any, str, str]:
    """(table, path, sha256) of the first table in ``dirs`` calibrated for this technology with this wire
    resistance and rows: the table registry's lookup (``cosim.surrogate.registry.find_table``)."""
    from ..surrogate.registry import find_table as registry_find_table

    return registry_find_table(tech_name, rows, r_wire_ohm, dirs)


# ------------------------------------------------------------------------------------- the mirrored encoding

class MirroredBinConv2d(BinConv2d):
    """A BinConv2d whose crossbars see both operands negated: -1 is stored and applied as the conducting
    state. conv(-x, -W) = conv(x, W), so the software result is unchanged; -1 padding rows conduct."""

    def binary_input(self, x: torch.Tensor) -> torch.Tensor:
        return -super().binary_input(x)

    def binary_weight(self) -> torch.Tensor:
        return -super().binary_weight()


def mirrored(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with every BinConv2d in the mirrored encoding."""
    out = copy.deepcopy(model)
    for name, m in list(out.named_modules()):
        if type(m) is BinConv2d:
            parent_name, _, attr = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            new = MirroredBinConv2d(m.in_channels, m.out_channels, m.kernel_size[0], stride=m.stride[0], padding=m.pad)
            new.load_state_dict(m.state_dict())
            setattr(parent, attr, new)
    return out.eval()


# ------------------------------------------------------------------------------------------- cells

def cell_payload(cell: Cell, ctx: StudyContext) -> dict[str, Any]:
    """Everything that determines a cell's result (hashed into its key)."""
    _, weights_sha = ctx.model(cell.network)
    _, _, data_sha, _ = ctx.data()
    payload = {"format": CACHE_FORMAT, "cell": cell.as_dict(), "weights_sha256": weights_sha,
               "data_sha256": data_sha, "code": source_hash(KEY_SOURCES)}
    if cell.variant != "software":
        _, _, table_sha = ctx.table_for(cell)
        payload["table_sha256"] = table_sha
    return payload


def compute_cell(cell: Cell, ctx: StudyContext, progress: bool = False) -> dict[str, Any]:
    """Accuracy (and, on arrays, statistics and array energy) of one cell."""
    from ..bnn.evaluate import predict

    model, weights_sha = ctx.model(cell.network)
    images, labels, data_sha, data_src = ctx.data()
    idx = ctx.indices(labels)[:cell.limit]
    torch.manual_seed(cell.seed)
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if cell.variant == "software":
        net = model
        prov = record(network=cell.network, technology=None, rows=None, solver="torch float32 (software)",
                      seed=cell.seed)
    else:
        try:
            from ..cim import to_cim
        except ImportError as e:  # issue 5's API not (yet) in this checkout
            raise InputError(f"CiM inference is not available in this checkout ({e})") from None
        flags = cell.flags
        table, table_path, table_sha = ctx.table_for(cell)
        base = mirrored(model) if flags["encoding"] == "minus" else model
        try:
            net = to_cim(base, tech=cell.technology, rows=cell.rows, cols=cell.cols, mode="surrogate", table=table,  # type: ignore[arg-type]  # a CiM cell: all set
                         binsparx=flags["binsparx"], adc_bits=cell.adc_bits,
                         adc_reference="calibrated" if flags["adc_cal"] else "ideal",
                         max_active_rows=cell.pwa_rows if flags["pwa"] else None, device=ctx.config.device,
                         seed=cell.seed, certify=cell.certify)
        except ImportError as e:  # a part of the CiM stack (surrogate, ADC) not in this checkout
            raise InputError(f"CiM inference is not available in this checkout ({e})") from None
        tprov = getattr(table, "provenance", {}) or {}
        prov = record(network=cell.network, technology=cell.technology, rows=cell.rows, cols=cell.cols,
                      r_wire_ohm=cell.r_wire_ohm, table=table_path, table_sha256=table_sha,
                      ngspice_version=tprov.get("ngspice_version"), solver=tprov.get("solver"),
                      table_code_version=tprov.get("code_version"), seed=cell.seed)
        prov["cim_config_sha256"] = getattr(net, "cim_config").digest()     # the CiMConfig to_cim built (cosim.cim.config)
        if cell.certify:
            prov["array_model"] = "surrogate-certified"
    def predict_ix(ix: np.ndarray) -> np.ndarray:
        return predict(net, images[ix], batch_size=ctx.config.batch_size, device=ctx.config.device,
                       progress=progress).argmax(axis=1)

    if cell.variant == "software":
        ok, stopped = evaluate_chunked(predict_ix, idx, labels)
    else:   # in parts kept beside the cache, so that an interrupted cell resumes part-way (CellParts)
        parts = CellParts(ctx.cache_root, make_key(cell_payload(cell, ctx)))
        ok, stopped = evaluate_chunked(predict_ix, idx, labels, part_images=PART_IMAGES,
                                       segment=lambda a, b, outcomes: parts.run(net, a, b, outcomes))
        parts.finish(net)
    n = len(ok)
    out.update(outcome_fields(ok, idx[:n], planned=len(idx), stopped=stopped))
    if cell.variant != "software":
        from ..cim import cim_stats
        st = cim_stats(net)
        ov = st["overall"]
        out["stats"] = ov
        out["layer_stats"] = st["layers"]
        e = ov.get("array_energy_j")
        out["array_energy_per_image_j"] = None if e is None else e / n
        arr = getattr(net, "cim_array", None)
        if cell.certify and arr is not None:   # how much of the read the certificate re-solved
            d = arr.describe()
            out["certified"] = {k: d[k] for k in ("columns_read", "columns_resolved", "certify_safety_counts")}
    out["seconds"] = round(time.perf_counter() - t0, 3)
    prov.update({"weights_sha256": weights_sha, "data": data_src, "data_sha256": data_sha,
                 "device": ctx.config.device, "machine_cpus": os.cpu_count(), "cpu": cpu_model()})
    out["provenance"] = prov
    return out


def evaluate_chunked(predict_fn: Callable[[np.ndarray], np.ndarray], idx: np.ndarray,
                     labels: np.ndarray, part_images: int | None = None,
                     segment: Callable[[int, int, Callable[[], np.ndarray]], np.ndarray] | None = None
                     ) -> tuple[np.ndarray, bool]:
    """Per-image correctness of ``predict_fn`` (indices -> predicted classes) on ``idx``, in two chunks:
    the first ``stats.CHANCE_MIN_IMAGES`` images, then the rest, which is skipped where the first chunk
    is at chance (``stats.at_chance``); the rest in parts of ``part_images`` (default: one part).
    ``segment(start, stop, outcomes)``: the outcomes of ``idx[start:stop]`` for a caller that keeps or reads
    back parts (``outcomes()`` computes them: ``predict_fn`` on those images). (outcomes of the images evaluated,
    stopped at chance)."""
    def run(a: int, b: int) -> np.ndarray:
        def outcomes() -> np.ndarray:
            return np.asarray(predict_fn(idx[a:b]) == labels[idx[a:b]], dtype=bool)
        return outcomes() if segment is None else np.asarray(segment(a, b, outcomes), dtype=bool)

    first = min(len(idx), stats.CHANCE_MIN_IMAGES)
    ok = run(0, first)
    if first < len(idx):
        if stats.at_chance(int(ok.sum()), len(ok)):
            return ok, True
        step = max(1, part_images or len(idx))
        ok = np.concatenate([ok] + [run(a, min(a + step, len(idx))) for a in range(first, len(idx), step)])
    return ok, False


#: images per kept part of an array cell after its first chunk (a multiple of the batch size keeps the batches
#: of an uninterrupted run, so the parts change no result)
PART_IMAGES = 1000


class CellParts:
    """The finished parts of one array cell (``<cache>/parts/<key>_<start>-<stop>.json``), so that an interrupted
    cell resumes from its last finished part: each holds the part's per-image outcomes, the run counts its images
    added to every layer's statistics (``cosim.cim.stats.LayerStats``) and, for certified reads, the columns read
    and re-solved. ``run(net, start, stop, outcomes)`` reads a part back or computes it (``outcomes()``: the
    part's per-image correctness, run through ``net``) and keeps it, adding its statistics to the totals that
    ``finish`` puts back into the network."""

    KIND = "parts"

    def __init__(self, root: str | Path, key: str) -> None:
        self.store = CellStore(root)
        self.key = key
        self.totals: dict[str, Any] = {}
        self.certified = [0, 0]          # columns read, columns re-solved
        self.keeping = True              # False once a part could not be written (full or read-only disk)

    def _name(self, start: int, stop: int) -> str:
        return f"{self.key}_{start:05d}-{stop:05d}"

    def run(self, net: torch.nn.Module, start: int, stop: int, outcomes: Callable[[], np.ndarray]) -> np.ndarray:
        from ..cim import cim_layers, reset_stats
        from ..cim.stats import LayerStats

        layers = dict(cim_layers(net))
        if not self.totals:
            reset_stats(net)
            self.totals = {name: copy.deepcopy(m.matrix.stats) for name, m in layers.items()}
        arr = getattr(net, "cim_array", None)
        hit = self.store.get(self._name(start, stop), kind=self.KIND)
        try:
            if hit is not None:
                ok = stats.unpack_bits(hit["correct_bits"], stop - start)
                added = {name: LayerStats(**d) for name, d in hit["layers"].items()}
                if set(added) != set(self.totals):
                    raise ValueError("another network's layers")
                for name, st in added.items():
                    self.totals[name].add_run(st)
                self.certified = [a + int(b) for a, b in zip(self.certified, hit.get("certified", (0, 0)))]
                return ok
        except (KeyError, TypeError, ValueError):
            pass                          # a damaged part is computed again
        reset_stats(net)
        before = (getattr(arr, "columns_read", 0), getattr(arr, "resolved", 0))
        ok = outcomes()
        added = {name: m.matrix.stats for name, m in layers.items()}
        read = (getattr(arr, "columns_read", 0) - before[0], getattr(arr, "resolved", 0) - before[1])
        for name, st in added.items():
            self.totals[name].add_run(st)
        self.certified = [a + int(b) for a, b in zip(self.certified, read)]
        if self.keeping:
            try:
                self.store.put(self._name(start, stop), {
                    "correct_bits": stats.pack_bits(ok),
                    "layers": {name: {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}
                               for name, st in added.items()},
                    "certified": list(read)}, kind=self.KIND)
            except OSError:
                self.keeping = False      # the cell still runs to its end; it just cannot resume part-way
        return ok

    def finish(self, net: torch.nn.Module) -> None:
        """Every layer's statistics (and a certified array's counters) the totals of all parts."""
        from ..cim import cim_layers

        for name, m in cim_layers(net):
            if name in self.totals:
                m.matrix.stats = self.totals[name]
        arr = getattr(net, "cim_array", None)
        if arr is not None and hasattr(arr, "resolved"):
            arr.columns_read, arr.resolved = self.certified

    def discard(self) -> None:
        """Remove this cell's parts (its result is cached)."""
        folder = self.store.path(self.key, kind=self.KIND).parent
        for f in folder.glob(f"{self.key}_*"):
            f.unlink(missing_ok=True)


def outcome_fields(ok: np.ndarray, idx: np.ndarray, planned: int, stopped: bool) -> dict[str, Any]:
    """The accuracy fields of a cell result with its per-image outcomes (``stats.pack_bits``) and the
    indices of its images in the loaded test split (``index_ranges``)."""
    n = len(ok)
    correct = int(np.sum(ok))
    return {"accuracy": correct / n, "correct": correct, "n": n, "n_planned": int(planned),
            "stopped_at_chance": bool(stopped), "correct_bits": stats.pack_bits(ok),
            "image_ranges": index_ranges(idx[:n])}


def cell_outcomes(result: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(image indices, per-image correctness) of a cell result; None for results without them (cells
    cached before per-image outcomes were kept) or with damaged ones."""
    if not result or "correct_bits" not in result or "image_ranges" not in result:
        return None
    try:
        idx = expand_ranges(result["image_ranges"])
        ok = stats.unpack_bits(result["correct_bits"], len(idx))
    except (ValueError, TypeError):
        return None
    if len(idx) != int(result.get("n", -1)):
        return None
    return idx, ok


@dataclass
class CellResult:
    cell: Cell
    status: str                     #: "computed", "cached" or "not run"
    result: dict | None = None
    reason: str = ""
    key: str = ""
    payload: dict | None = None     #: what the key hashes (kept to export the cell: report/cells.jsonl)


ComputeFn = Callable[[Cell, StudyContext], dict]

#: study contexts of this process by config (a worker loads weights, data and tables once, not per cell)
_CONTEXTS: dict[str, StudyContext] = {}


def config_token(config: StudyConfig) -> str:
    """A key of everything in ``config`` that a cell's computation may read."""
    return make_key({k: v for k, v in dataclasses.asdict(config).items() if k not in ("raw", "source")})


def context_for(config: StudyConfig) -> StudyContext:
    """This process's StudyContext for ``config``: the caller's own (registered by ``run_cells``), else
    one made here, once (a worker process: torch is set to the config's thread count)."""
    tok = config_token(config)
    ctx = _CONTEXTS.get(tok)
    if ctx is None:
        torch.set_num_threads(config.threads)
        ctx = _CONTEXTS[tok] = StudyContext(config)
    return ctx


def _compute_quiet(cell: Cell, ctx: StudyContext) -> dict:
    return compute_cell(cell, ctx, progress=False)


class CellTask:
    """One grid cell as a task of ``cosim.sweep.executor`` (picklable: a Dask or process worker runs it).

    The item is ``(cell, payload)``, the payload as keyed by the caller. The worker recomputes it from
    its own weights, test images, tables and code and refuses to compute a cell whose inputs differ
    from the caller's (another checkpoint or cosim version on that machine): the cached result would
    be keyed by what did not run. A CosimError of the cell (a missing table, say) comes back as
    ``{"not_run": reason}``."""

    def __init__(self, config: StudyConfig, compute: ComputeFn | None = None,
                 payload: Callable[[Cell, StudyContext], dict] | None = None) -> None:
        self.config = config
        self.compute = compute or _compute_quiet
        self.payload = payload or cell_payload

    def __call__(self, item: tuple[Cell, dict]) -> dict:
        cell, expected = item
        try:
            ctx = context_for(self.config)
            got = self.payload(cell, ctx)
            if make_key(got) != make_key(expected):
                diff = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
                raise InputError(f"cell {cell.label()}: this worker's inputs differ from the caller's in "
                                 f"{', '.join(diff)} (install the same cosim, weights, data and tables everywhere)")
            return {"result": self.compute(cell, ctx)}
        except CosimError as e:
            return {"not_run": str(e)}


def run_cells(cells: list[Cell], ctx: StudyContext, compute: ComputeFn | None = None,
              progress: bool = True, payload: Callable[[Cell, StudyContext], dict] | None = None,
              executor: Any = None, timeout_s: float | None = None, retries: int | None = None) -> list[CellResult]:
    """Run ``cells`` (cached ones are read back, not recomputed) as tasks of ``executor`` (``cosim.sweep.executor``;
    default: one after the other in this process). Keys are computed and results cached here, as they
    arrive, so workers need no shared cache. A cell whose inputs are missing (a CosimError while keying or
    computing it) or whose task failed (a worker lost ``retries`` times, or no result within
    ``timeout_s``) is reported as not run, with the reason, and not cached; an interrupt stops the run
    with every finished cell already on disk. ``compute`` and ``payload`` must be picklable (module-level
    functions) for an executor with worker processes."""
    from ..sweep.executor import DEFAULT_RETRIES, SchedulerLostError, make_executor

    store = CellStore(ctx.cache_root)
    task = CellTask(ctx.config, compute, payload)
    results: list[CellResult | None] = [None] * len(cells)
    todo: list[tuple[int, dict, str]] = []
    for i, cell in enumerate(cells):
        try:
            pay = task.payload(cell, ctx)
            key = make_key(pay)
        except CosimError as e:
            results[i] = CellResult(cell, "not run", None, reason=str(e))
            continue
        hit = store.get(key)
        if hit is not None:
            results[i] = CellResult(cell, "cached", hit["result"], key=key, payload=pay)
        else:
            todo.append((i, pay, key))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="study cells", unit="cell")
    own = executor is None
    ex = make_executor(1) if own else executor
    tok = config_token(ctx.config)
    registered = _CONTEXTS.get(tok)
    _CONTEXTS[tok] = ctx                      # tasks run in this process use the caller's loaded context
    try:
        items = [(cells[i], pay) for i, pay, _ in todo]
        stream = ex.map(task, items, timeout_s=timeout_s, retries=DEFAULT_RETRIES if retries is None else retries)
        cache_fault = None
        try:
            for r in stream:
                i, pay, key = todo[r.index]
                cell = cells[i]
                if not r.ok:
                    results[i] = CellResult(cell, "not run", None, reason=f"task failed: {r.error}")
                elif "not_run" in r.value:
                    results[i] = CellResult(cell, "not run", None, reason=r.value["not_run"])
                else:
                    res = r.value["result"]
                    try:
                        store.put(key, {"payload": pay, "result": res})
                        CellParts(store.root, key).discard()     # the parts it was computed in are no longer needed
                    except OSError as e:   # full or read-only: keep this cell's result, compute no more
                        cache_fault = describe_os_error(e)
                    results[i] = CellResult(cell, "computed", res, key=key, payload=pay)
                if bar is not None:
                    bar.set_postfix_str(cell.label()[:60])
                    bar.update(1)
                if cache_fault is not None:
                    stream.close()
                    for j, _, _ in todo:
                        if results[j] is None:
                            results[j] = CellResult(cells[j], "not run", None,
                                                    reason=f"{CACHE_FAULT}: {cache_fault}")
                    break
        except SchedulerLostError as e:
            kept = sum(r is not None and r.status in ("computed", "cached") for r in results)
            raise SchedulerLostError(f"{e}; {kept} of {len(cells)} cells are kept in the cell cache {store.root}: run "
                                     "the same command again (with a running scheduler) to resume") from None
    finally:
        if registered is None:
            _CONTEXTS.pop(tok, None)
        else:
            _CONTEXTS[tok] = registered
        if own:
            ex.close()
        if bar is not None:
            bar.close()
    return [r for r in results if r is not None]


# ------------------------------------------------------------------------------------------- skew

def skew_for(network: str, rows: int, ctx: StudyContext, progress: bool = False) -> dict:
    """Skew statistics and ON-count histograms of ``network`` with ``rows``-row tiles (cached)."""
    from ..bnn.datasets import to_tensor
    from . import skew

    store = CellStore(ctx.cache_root)
    model, weights_sha = ctx.model(network)
    images, _, _, data_src = ctx.data()
    n = min(ctx.config.skew_images, len(images))
    pay = {"format": CACHE_FORMAT, "network": network, "rows": rows, "images": n,
           "images_sha256": sha256_arrays(images[:n]), "weights_sha256": weights_sha,
           "code": source_hash(SKEW_SOURCES)}
    key = make_key(pay)
    hit = store.get(key, kind="skew")
    if hit is not None:
        return hit["result"]
    t0 = time.perf_counter()
    layers = skew.measure_skew(model, to_tensor(images[:n]), rows, progress=progress)
    res = {"network": network, "rows": rows, "images": n,
           "layers": [l.summary() for l in layers],
           "overall": skew.overall_summary(layers),
           "hist": {s: skew.total_histogram(layers, s).tolist() for s in skew.SCHEMES},
           "shapes": [{"name": l.name, "k": l.n, "n": l.cout, "positions": l.positions} for l in layers],
           "seconds": round(time.perf_counter() - t0, 3),
           "provenance": record(network=network, rows=rows, technology=None, solver="exact integer counts (torch)",
                                seed=ctx.config.seed, weights_sha256=weights_sha, data=data_src)}
    try:
        store.put(key, {"payload": pay, "result": res}, kind="skew")
    except OSError:
        pass   # a read-only cache (cosim report --from-cache): the statistics are used, just not kept
    return res
