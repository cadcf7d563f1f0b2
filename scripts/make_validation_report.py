#!/usr/bin/env python
"""Validate every shipped lookup table against fresh SPICE points and write docs/VALIDATION.md with
plots under docs/figures/ (``cosim.study.validation_report``).

    .venv/bin/python scripts/make_validation_report.py [--work runs/validation] [--only sram8t_64,...]
    .venv/bin/python scripts/make_validation_report.py --network-only     # only the network section
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim.study.validation_report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
