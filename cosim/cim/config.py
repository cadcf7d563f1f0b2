"""The configuration of a CiM conversion: what :func:`cosim.cim.to_cim` builds a network on crossbars from.

One frozen :class:`CiMConfig` of four groups, each field documented with its meaning and unit (``CiMConfig.doc``):

    array    ArrayConfig    technology, array size, topology, mode, lookup table, certified reads
    adc      ADCConfig      resolution, reference levels, AND-counts per code
    mapping  MappingConfig  BinSparX, partial wordline activation, sampling stride of the ON-count statistics
    run      RunConfig      torch device, memory per chunk, seed and size of the SPICE spot checks

Every value is checked here, once, when a config is made (one-line :class:`~cosim.errors.InputError`s).
``as_dict()`` is JSON-safe and ``from_dict()`` reads it back; ``digest()`` is the SHA-256 of its canonical
JSON (sorted keys, no spaces), a cache key that changes with every field. ``to_cim``'s keyword names
(``tech``, ``rows``, ``adc_bits``, ``max_active_rows``, ``spice_tiles``, ...) name the fields too:

    >>> cfg = CiMConfig.from_kwargs(tech="sram8t", rows=64, mode="surrogate", binsparx=True)
    >>> cfg.array.rows, cfg.mapping.binsparx, cfg.replace(adc_bits=5).adc.bits
    (64, True, 5)

A table given as a :class:`~cosim.surrogate.tables.LookupTable` object is kept as the object (worker
processes rebuild the same network from the config); its dict holds its file (``path``, None for a table
made in memory) and the SHA-256 of its content (``sha256``), so the digest follows the table's numbers.
A table given as a path is hashed as the path: the digest does not read the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..circuit.netlist import MAX_SIZE
from ..circuit.technology import REGISTRY, TOPOLOGIES, Technology
from ..errors import InputError
from ..surrogate.adc import REFERENCES
from .layers import DEFAULT_CHUNK_BYTES

MODES = ("ideal", "surrogate", "spice", "exact")


def _f(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


def _int(name: str, v: Any, low: int, high: int | None = None, what: str | None = None) -> int:
    """``v`` as an int within [low, high], else the one-line error ``what`` (or a plain one)."""
    import numpy as np
    ok = not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer)) and low <= int(v) \
        and (high is None or int(v) <= high)
    if not ok:
        raise InputError(what or f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def _bool(name: str, v: Any) -> bool:
    import numpy as np
    if not isinstance(v, (bool, np.bool_)):
        raise InputError(f"{name} must be true or false, got {v!r}")
    return bool(v)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class ArrayConfig:
    """The crossbars and how their reads are modelled."""

    tech: Any = _f("sram8t", "technology: a registry name (cosim.circuit.technology.REGISTRY) or a Technology; in "
                             "the surrogate, spice and exact modes the table's own parameters are used")
    rows: int = _f(64, f"rows R of one crossbar (cells), 1..{MAX_SIZE}: the inputs summed on one column")
    cols: int = _f(64, f"columns C of one crossbar (cells), 1..{MAX_SIZE}")
    topology: str | None = _f(None, f"array topology, one of {TOPOLOGIES}; None: the table's (without a table, "
                                    "the technology's)")
    mode: str = _f("ideal", f"how a column is read, one of {MODES}: exact AND-counts, the SPICE-calibrated "
                            "surrogate, the surrogate plus SPICE reads of a few tiles, or every column solved exactly")
    table: Any = _f(None, "lookup table (cosim calibrate): a path or a LookupTable; None: the shipped table of the "
                          "technology and row count (ideal mode: only for the unit cell currents of the energy)")
    certify: bool = _f(False, "surrogate mode: certified reads, columns within the table's residual margin of an "
                              "ADC decision level re-solved exactly (needs a table with recorded residuals)")
    certify_table: Any = _f(None, "certified reads: the table (a path or a LookupTable, same technology and size) "
                                  "whose currents and recorded residuals choose the columns to re-solve; None: "
                                  "`table` itself. The codes keep `table`'s ADC decision levels, so a table without "
                                  "residuals (fitted before cosim recorded them) can be certified by one that has them")

    def __post_init__(self) -> None:
        if isinstance(self.tech, str):
            if self.tech not in REGISTRY:
                raise InputError(f"unknown technology '{self.tech}': expected one of {', '.join(REGISTRY)}")
        elif not isinstance(self.tech, Technology):
            raise InputError(f"tech must be a technology name or a Technology, got {type(self.tech).__name__}")
        for name in ("rows", "cols"):
            # checked before anything is allocated: a crossbar of a million columns would exhaust memory
            v = getattr(self, name)
            _set(self, name, _int(name, v, 1, MAX_SIZE, f"{name} must be an integer from 1 to {MAX_SIZE}, got {v!r}"))
        if self.topology is not None and self.topology not in TOPOLOGIES:
            raise InputError(f"unknown topology '{self.topology}': expected one of {', '.join(TOPOLOGIES)}")
        if self.mode not in MODES:
            raise InputError(f"unknown mode '{self.mode}': expected one of {', '.join(MODES)}")
        for name in ("table", "certify_table"):
            v = getattr(self, name)
            if isinstance(v, os.PathLike):
                _set(self, name, v := os.fspath(v))
            if v is not None and not isinstance(v, str) and not _is_table(v):
                raise InputError(f"{name} must be a path or a LookupTable, got {type(v).__name__}")
        _set(self, "certify", _bool("certify", self.certify))
        if self.certify and self.mode != "surrogate":
            raise InputError(f"certified reads are a form of the surrogate mode, not of '{self.mode}'")
        if self.certify_table is not None and not self.certify:
            raise InputError("certify_table is for certified reads (certify=True)")

    @property
    def tech_name(self) -> str:
        return self.tech if isinstance(self.tech, str) else self.tech.name

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe fields: a Technology as its parameters, a table object as {"path", "sha256"}."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.tech, Technology):
            out["tech"] = self.tech.as_dict()
        for name in ("table", "certify_table"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                out[name] = {"path": v.provenance.get("source_path"), "sha256": table_sha256(v)}
        return out

    # equal where the dicts are: two table objects of the same content are the same table
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArrayConfig):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.as_dict(), sort_keys=True))


@dataclass(frozen=True)
class ADCConfig:
    """The column ADC of the surrogate, spice and exact modes (ideal mode reads exact counts)."""

    bits: int | None = _f(None, "ADC resolution (bits), 1..16; None: one code per AND-count")
    reference: str = _f("ideal", f"reference levels, one of {REFERENCES}: k x I_cell, or the SPICE-calibrated "
                                 "mean column currents of the table")
    lsb_counts: int = _f(1, "AND-counts per ADC code (counts)")

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise InputError(f"unknown ADC references '{self.reference}': expected one of {', '.join(REFERENCES)}")
        if self.bits is not None:
            _set(self, "bits", _int("bits", self.bits, 1, 16, f"ADC bits must be an integer from 1 to 16, got {self.bits!r}"))
        _set(self, "lsb_counts", _int("lsb_counts", self.lsb_counts, 1, None,
                                      f"ADC lsb_counts must be a positive integer, got {self.lsb_counts!r}"))


@dataclass(frozen=True)
class MappingConfig:
    """How a layer's weights and inputs are laid onto the crossbars."""

    binsparx: bool = _f(False, "BinSparX: weight columns and input sub-vectors flipped where that leaves fewer "
                               "ON cells (cosim.cim.binsparx)")
    max_active_rows: int | None = _f(None, "partial wordline activation: at most this many rows on per read "
                                           "(rows); None: every row of a tile at once")
    max_stride: int = _f(8, "the largest ON-count of a read is sampled over every max_stride-th input vector "
                            "(vectors)")

    def __post_init__(self) -> None:
        _set(self, "binsparx", _bool("binsparx", self.binsparx))
        if self.max_active_rows is not None:
            _set(self, "max_active_rows", _int("max_active_rows", self.max_active_rows, 1, None,
                                               f"max_active_rows must be >= 1, got {self.max_active_rows!r}"))
        _set(self, "max_stride", _int("max_stride", self.max_stride, 1))


@dataclass(frozen=True)
class RunConfig:
    """Where and in what pieces the network runs, and the SPICE spot checks of the spice mode."""

    device: str = _f("cpu", "torch device the network runs on: cpu, cuda or cuda:N")
    chunk_bytes: int = _f(DEFAULT_CHUNK_BYTES, "unrolled input bits processed at once by one layer (bytes): bounds "
                                               "memory whatever the batch")
    seed: int = _f(0, "seed of the spot-check tile choice (spice mode)")
    spice_tiles: int = _f(4, "spice mode: crossbars (tiles) simulated in ngspice")
    spice_vectors: int = _f(8, "spice mode: input vectors per simulated tile")

    def __post_init__(self) -> None:
        import torch
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            raise InputError(f"unknown device {self.device!r}: expected cpu, cuda or cuda:N") from None
        _set(self, "device", str(dev))
        _set(self, "chunk_bytes", _int("chunk_bytes", self.chunk_bytes, 1))
        _set(self, "seed", _int("seed", self.seed, 0))
        for name in ("spice_tiles", "spice_vectors"):
            _set(self, name, _int(name, getattr(self, name), 1))


GROUPS = {"array": ArrayConfig, "adc": ADCConfig, "mapping": MappingConfig, "run": RunConfig}

#: to_cim's keyword names -> (group, field)
KEYWORDS: dict[str, tuple[str, str]] = {
    **{f.name: ("array", f.name) for f in dataclasses.fields(ArrayConfig)},
    "adc_bits": ("adc", "bits"), "adc_reference": ("adc", "reference"), "adc_lsb_counts": ("adc", "lsb_counts"),
    **{f.name: ("mapping", f.name) for f in dataclasses.fields(MappingConfig)},
    **{f.name: ("run", f.name) for f in dataclasses.fields(RunConfig)},
}


@dataclass(frozen=True)
class CiMConfig:
    """Everything a CiM conversion is made from (see the module docstring). Immutable; use ``replace``."""

    array: ArrayConfig = field(default_factory=ArrayConfig)
    adc: ADCConfig = field(default_factory=ADCConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        for name, cls in GROUPS.items():
            if not isinstance(getattr(self, name), cls):
                raise InputError(f"CiMConfig.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")

    # ---- to_cim's flat keywords ------------------------------------------------------------------
    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "CiMConfig":
        """A config from to_cim's keyword arguments (the rest at their defaults)."""
        return cls().replace(**kwargs)

    def replace(self, **kwargs: Any) -> "CiMConfig":
        """A copy with some fields changed, named by to_cim's keywords (``adc_bits=5``); validated."""
        unknown = sorted(set(kwargs) - set(KEYWORDS))
        if unknown:
            raise InputError(f"unknown CiM configuration field(s): {', '.join(unknown)} (expected some of "
                             f"{', '.join(KEYWORDS)})")
        groups: dict[str, dict[str, Any]] = {}
        for k, v in kwargs.items():
            g, f = KEYWORDS[k]
            groups.setdefault(g, {})[f] = v
        if not groups:
            return self
        return dataclasses.replace(self, **{g: dataclasses.replace(getattr(self, g), **fs) for g, fs in groups.items()})

    def kwargs(self) -> dict[str, Any]:
        """to_cim's keyword arguments for this config."""
        return {k: getattr(getattr(self, g), f) for k, (g, f) in KEYWORDS.items()}

    # ---- JSON ---------------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict, one entry per group (a table object as {"path", "sha256"}, a Technology
        object as its parameters)."""
        out = {g: {f.name: getattr(getattr(self, g), f.name) for f in dataclasses.fields(cls)}
               for g, cls in GROUPS.items()}
        out["array"] = self.array.as_dict()
        return out

    @classmethod
    def from_dict(cls, d: Any) -> "CiMConfig":
        """The config of an ``as_dict()`` (fields it lacks at their defaults). A table object's entry gives
        its file path (an error for a table made in memory, which has none)."""
        if not isinstance(d, dict):
            raise InputError(f"a CiM configuration must be a dict, got {type(d).__name__}")
        unknown = [g for g in d if g not in GROUPS]
        unknown += [f"{g}.{k}" for g, cls_ in GROUPS.items() if isinstance(d.get(g), dict)
                    for k in d[g] if k not in {f.name for f in dataclasses.fields(cls_)}]
        if unknown:
            raise InputError(f"unknown CiM configuration field(s): {', '.join(unknown)}")
        groups = {}
        for g, cls_ in GROUPS.items():
            fs = d.get(g, {})
            if not isinstance(fs, dict):
                raise InputError(f"CiM configuration group '{g}' must be a dict, got {type(fs).__name__}")
            fs = dict(fs)
            if g == "array":
                if isinstance(fs.get("tech"), dict):
                    try:
                        fs["tech"] = Technology(**fs["tech"])
                    except TypeError as e:
                        raise InputError(f"CiM configuration: invalid technology parameters ({e})") from None
                for name in ("table", "certify_table"):
                    if not isinstance(fs.get(name), dict):
                        continue
                    path = fs[name].get("path")
                    if path is None:
                        raise InputError(f"the CiM configuration's {name} was made in memory (no path): "
                                         "its dict cannot give it back")
                    fs[name] = path
            groups[g] = cls_(**fs)
        return cls(**groups)

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of ``as_dict()``."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    @staticmethod
    def doc(name: str) -> str:
        """The documentation of a field, by to_cim's keyword (``adc_bits``) or ``group.field``."""
        g, f = name.split(".", 1) if "." in name else KEYWORDS.get(name, ("", name))
        if g not in GROUPS or f not in {x.name for x in dataclasses.fields(GROUPS[g])}:
            raise InputError(f"unknown CiM configuration field '{name}'")
        return next(x for x in dataclasses.fields(GROUPS[g]) if x.name == f).metadata["doc"]


def _is_table(obj: Any) -> bool:
    from ..surrogate.tables import LookupTable
    return isinstance(obj, LookupTable)


def table_sha256(lut: Any) -> str:
    """SHA-256 of a lookup table's content: its arrays' values, its meta and its provenance (but where it was
    loaded from)."""
    import numpy as np

    from ..provenance import json_default
    h = hashlib.sha256()
    for name in sorted(lut.arrays):
        a = np.ascontiguousarray(lut.arrays[name], dtype="<f8")
        h.update(f"{name}:{a.shape}:".encode())
        h.update(a.tobytes())
    prov = {k: v for k, v in lut.provenance.items() if k != "source_path"}
    h.update(json.dumps({"meta": lut.meta, "provenance": prov}, sort_keys=True, default=json_default).encode())
    return h.hexdigest()
