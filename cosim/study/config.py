"""The study grid, described by ONE TOML file (``configs/study.toml``).

The built-in defaults are the full grid of the BinSparX study (issue 6):
{VGG-small, ResNet-18} x {8T-SRAM, 1T-1R ReRAM} x {64, 128, 256 rows} x {2, 5, 10, 20 ohm per cell}
x variants. A ``[quick]`` table overrides some of them for ``cosim report --quick``: the default
technology, VGG-small, one array size and wire resistance, a class-balanced subset of the test set.

File layout (every table and key optional; unknown keys are an error)::

    [grid]
    networks     = ["vgg-small", "resnet18"]
    technologies = ["sram8t", "reram1t1r"]
    rows         = [64, 128, 256]
    r_wire_ohm   = [2.0, 5.0, 10.0, 20.0]
    variants     = ["software", "nonideal", "binsparx", ...]    # see VARIANTS

    [run]
    cols = 64             # columns per crossbar tile (cosim infer's default array is 64 x 64)
    limit = 1000          # N CIFAR-10 test images per cell, N/10 per class (the first of each class)
    claims_limit = 10000  # the cells the claims table names are run again on this many (0: not)
    adc_bits = 0          # 0: the ADC resolves every count of a column (ceil(log2(rows + 1)) bits)
    pwa_rows = 16         # partial wordline activation: at most this many rows on at a time
    batch_size = 250
    seed = 0
    skew_images = 64      # images for the skew statistics / ON-count histograms
    device = "cpu"
    threads = 1           # torch CPU threads (1 is fastest on a machine shared with other jobs)
    certify = false       # true: every array cell reads through certified reads (cosim.cim.arrays.CertifiedArray)

    [paths]               # "" = the default (cosim.paths)
    data = ""
    models = ""
    cache = ""

    [quick]               # any key of [grid] or [run]; applied with --quick
    networks = ["vgg-small"]
    ...
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError

NETWORKS = ("vgg-small", "resnet18")
TECHNOLOGIES = ("sram8t", "reram1t1r")

#: variant -> (binsparx, partial wordline activation, calibrated ADC references, encoding).
#: "software" is the float/binary network itself, no array. encoding "plus": +1 stored and applied as
#: the conducting state (the paper's); "minus": the mirrored one (-1 conducting).
VARIANTS: dict[str, dict[str, Any]] = {
    "software": {"software": True, "binsparx": False, "pwa": False, "adc_cal": False, "encoding": "plus"},
    "nonideal": {"software": False, "binsparx": False, "pwa": False, "adc_cal": False, "encoding": "plus"},
    "mirrored": {"software": False, "binsparx": False, "pwa": False, "adc_cal": False, "encoding": "minus"},
    "binsparx": {"software": False, "binsparx": True, "pwa": False, "adc_cal": False, "encoding": "plus"},
    "pwa": {"software": False, "binsparx": False, "pwa": True, "adc_cal": False, "encoding": "plus"},
    "pwa+binsparx": {"software": False, "binsparx": True, "pwa": True, "adc_cal": False, "encoding": "plus"},
    "adc-cal": {"software": False, "binsparx": False, "pwa": False, "adc_cal": True, "encoding": "plus"},
    "adc-cal+binsparx": {"software": False, "binsparx": True, "pwa": False, "adc_cal": True, "encoding": "plus"},
}

#: default study: the full grid of issue 6.
DEFAULT_GRID: dict[str, Any] = {
    "networks": list(NETWORKS),
    "technologies": list(TECHNOLOGIES),
    "rows": [64, 128, 256],
    "r_wire_ohm": [2.0, 5.0, 10.0, 20.0],
    "variants": list(VARIANTS),
}
DEFAULT_RUN: dict[str, Any] = {
    "cols": 64,
    "limit": 1000,
    "claims_limit": 10000,
    "adc_bits": 0,
    "pwa_rows": 16,
    "batch_size": 250,
    "seed": 0,
    "skew_images": 64,
    "device": "cpu",
    "threads": 1,
    "certify": False,
}
DEFAULT_PATHS: dict[str, str] = {"data": "", "models": "", "cache": ""}
#: the quick study: default technology, VGG-small, default array size and wire resistance, a subset.
DEFAULT_QUICK: dict[str, Any] = {
    "networks": ["vgg-small"],
    "technologies": ["sram8t"],
    "rows": [64],
    "r_wire_ohm": [10.0],
    "variants": ["software", "nonideal", "mirrored", "binsparx", "adc-cal", "adc-cal+binsparx"],
    "limit": 100,
    "claims_limit": 0,
    "skew_images": 8,
}

MAX_ROWS = 4096
MAX_TEST_IMAGES = 10000


@dataclass(frozen=True)
class Cell:
    """One grid cell: what one accuracy figure depends on (besides weights, data, tables and code)."""

    network: str
    variant: str
    technology: str | None = None  # None for "software"
    rows: int | None = None
    cols: int | None = None
    r_wire_ohm: float | None = None
    adc_bits: int | None = None
    pwa_rows: int | None = None
    limit: int = MAX_TEST_IMAGES
    seed: int = 0
    #: certified reads (cosim.cim.arrays.CertifiedArray): the surrogate's codes, with the columns near an ADC
    #: decision level re-solved by the exact solver
    certify: bool = False

    @property
    def flags(self) -> dict[str, Any]:
        return VARIANTS[self.variant]

    def as_dict(self) -> dict[str, Any]:
        """The cell's fields (its cache key's part); ``certify`` only where set, so that the plain surrogate's
        cells keep the keys they had before the field existed."""
        d = dataclasses.asdict(self)
        if not self.certify:
            del d["certify"]
        return d

    def label(self) -> str:
        if self.variant == "software":
            return f"{self.network}/software/n={self.limit}"
        return (f"{self.network}/{self.technology}/{self.rows}x{self.cols}/{self.r_wire_ohm:g}ohm/"
                f"{self.variant}{'/certified' if self.certify else ''}/n={self.limit}")


@dataclass(frozen=True)
class StudyConfig:
    networks: tuple[str, ...]
    technologies: tuple[str, ...]
    rows: tuple[int, ...]
    r_wire_ohm: tuple[float, ...]
    variants: tuple[str, ...]
    cols: int
    limit: int
    adc_bits: int
    pwa_rows: int
    batch_size: int
    seed: int
    skew_images: int
    device: str
    threads: int = 1
    certify: bool = False            #: every array cell through certified reads
    claims_limit: int = 0            #: images for the cells the claims table names (0 or <= limit: no rerun)
    data: str = ""
    models: str = ""
    cache: str = ""
    quick: bool = False
    source: str = "built-in defaults"
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def adc_bits_for(self, rows: int) -> int:
        return self.adc_bits if self.adc_bits > 0 else full_adc_bits(rows)

    def cells(self) -> list[Cell]:
        """The grid's cells: one software cell per network, then every array cell."""
        out: list[Cell] = []
        for net in self.networks:
            if "software" in self.variants:
                out.append(Cell(network=net, variant="software", limit=self.limit, seed=self.seed))
            for tech in self.technologies:
                for rows in self.rows:
                    for r in self.r_wire_ohm:
                        for v in self.variants:
                            if v == "software":
                                continue
                            flags = VARIANTS[v]
                            out.append(Cell(
                                network=net, variant=v, technology=tech, rows=rows, cols=self.cols,
                                r_wire_ohm=float(r), adc_bits=self.adc_bits_for(rows),
                                pwa_rows=min(self.pwa_rows, rows) if flags["pwa"] else None,
                                limit=self.limit, seed=self.seed, certify=self.certify))
        return out

    def describe(self) -> str:
        return (f"{len(self.networks)} network(s) x {len(self.technologies)} technology(ies) x "
                f"{len(self.rows)} array size(s) x {len(self.r_wire_ohm)} wire resistance(s) x "
                f"{len(self.variants)} variant(s), {self.limit} test images per cell"
                + (f" ({self.claims_limit} for the cells the claims name)" if self.claims_limit > self.limit else "")
                + (", certified reads" if self.certify else "") + " "
                f"({'quick subset' if self.quick else 'full grid'}; from {self.source})")


def full_adc_bits(rows: int) -> int:
    """Bits an ADC needs to resolve every AND-count 0..rows of one column."""
    return max(1, math.ceil(math.log2(rows + 1)))


def load_config(path: str | Path | None = None, quick: bool = False) -> StudyConfig:
    """The study config from ``path`` (TOML, or JSON by suffix), else the built-in defaults."""
    raw: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"study config {p} does not exist")
        text = p.read_text(encoding="utf-8", errors="replace")
        try:
            raw = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"study config {p} is not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: "
                             f"{' '.join(str(e).split())}") from None
        source = str(p)
    return parse_config(raw, quick=quick, source=source)


def parse_config(raw: dict[str, Any], quick: bool = False, source: str = "dict") -> StudyConfig:
    """Validate a config mapping (as read from TOML) and apply ``[quick]`` when asked."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: a study config is a table of tables, got {type(raw).__name__}")
    _only(raw, ("grid", "run", "paths", "quick"), f"{source}: unknown section")
    sections = {}
    for name in ("grid", "run", "paths", "quick"):
        sec = raw.get(name, {})
        if not isinstance(sec, dict):
            raise InputError(f"{source}: [{name}] must be a table, got {type(sec).__name__}")
        sections[name] = sec
    _only(sections["grid"], tuple(DEFAULT_GRID), f"{source}: unknown key in [grid]")
    _only(sections["run"], tuple(DEFAULT_RUN), f"{source}: unknown key in [run]")
    _only(sections["paths"], tuple(DEFAULT_PATHS), f"{source}: unknown key in [paths]")
    _only(sections["quick"], tuple(DEFAULT_GRID) + tuple(DEFAULT_RUN), f"{source}: unknown key in [quick]")

    values: dict[str, Any] = {**DEFAULT_GRID, **DEFAULT_RUN, **DEFAULT_PATHS}
    values.update(sections["grid"])
    values.update(sections["run"])
    values.update(sections["paths"])
    if quick:
        values.update(DEFAULT_QUICK)
        values.update(sections["quick"])

    where = f"{source}{' [quick]' if quick else ''}"
    networks = tuple(_names(values["networks"], "networks", NETWORKS, where, _canon_network))
    technologies = tuple(_names(values["technologies"], "technologies", TECHNOLOGIES, where, str.lower))
    variants = tuple(_names(values["variants"], "variants", tuple(VARIANTS), where, str.lower))
    rows = tuple(_ints(values["rows"], "rows", where, lo=2, hi=MAX_ROWS))
    r_wire = tuple(_floats(values["r_wire_ohm"], "r_wire_ohm", where, lo=0.0, hi=1e4))
    cols = _int(values["cols"], "cols", where, lo=1, hi=MAX_ROWS)
    limit = _int(values["limit"], "limit", where, lo=1, hi=MAX_TEST_IMAGES)
    claims_limit = _int(values["claims_limit"], "claims_limit", where, lo=0, hi=MAX_TEST_IMAGES)
    adc_bits = _int(values["adc_bits"], "adc_bits", where, lo=0, hi=16)
    pwa_rows = _int(values["pwa_rows"], "pwa_rows", where, lo=1, hi=MAX_ROWS)
    batch_size = _int(values["batch_size"], "batch_size", where, lo=1, hi=100000)
    seed = _int(values["seed"], "seed", where, lo=0, hi=2**31 - 1)
    skew_images = _int(values["skew_images"], "skew_images", where, lo=1, hi=MAX_TEST_IMAGES)
    threads = _int(values["threads"], "threads", where, lo=1, hi=256)
    device = values["device"]
    certify = values["certify"]
    if not isinstance(certify, bool):
        raise InputError(f"{where}: certify must be true or false, got {certify!r}")
    if device not in ("cpu", "cuda") and not (isinstance(device, str) and device.startswith("cuda:")):
        raise InputError(f"{where}: device must be 'cpu' or 'cuda', got {device!r}")
    for key in DEFAULT_PATHS:
        if not isinstance(values[key], str):
            raise InputError(f"{where}: [paths] {key} must be a string, got {values[key]!r}")
    return StudyConfig(
        networks=networks, technologies=technologies, rows=rows, r_wire_ohm=r_wire, variants=variants,
        cols=cols, limit=limit, adc_bits=adc_bits, pwa_rows=pwa_rows, batch_size=batch_size, seed=seed,
        skew_images=skew_images, device=device, threads=threads, certify=certify, claims_limit=claims_limit,
        data=values["data"],
        models=values["models"],
        cache=values["cache"], quick=quick, source=source, raw=raw)


# ----------------------------------------------------------------------------------------- validation

def _only(d: dict, allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise InputError(f"{what}: {', '.join(map(str, unknown))} (allowed: {', '.join(allowed)})")


def _canon_network(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return {"vggsmall": "vgg-small", "resnet-18": "resnet18"}.get(key, key)


def _list(v: Any, key: str, where: str) -> list:
    if not isinstance(v, (list, tuple)) or not v:
        raise InputError(f"{where}: {key} must be a non-empty list, got {v!r}")
    return list(v)


def _names(v: Any, key: str, allowed: tuple[str, ...], where: str, canon) -> Iterator[str]:
    seen = []
    for item in _list(v, key, where):
        if not isinstance(item, str) or canon(item) not in allowed:
            raise InputError(f"{where}: unknown {key[:-1] if key.endswith('s') else key} {item!r} "
                             f"(expected one of {', '.join(allowed)})")
        if canon(item) not in seen:
            seen.append(canon(item))
    return iter(seen)


def _int(v: Any, key: str, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):
        raise InputError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {v!r}")
    return int(v)


def _ints(v: Any, key: str, where: str, lo: int, hi: int) -> list[int]:
    return sorted({_int(x, key, where, lo, hi) for x in _list(v, key, where)})


def _floats(v: Any, key: str, where: str, lo: float, hi: float) -> list[float]:
    out = set()
    for x in _list(v, key, where):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not (lo <= x <= hi) or x != x:
            raise InputError(f"{where}: {key} values must be numbers in [{lo:g}, {hi:g}], got {x!r}")
        out.add(float(x))
    return sorted(out)
