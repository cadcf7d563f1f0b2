#!/usr/bin/env python
"""Validate every shipped lookup table against fresh SPICE points and write docs/VALIDATION.md with
plots under docs/figures/ (``cosim.study.validation_report``).

    .venv/bin/python scripts/make_validation_report.py [--work runs/validation] [--only sram8t_64,sram8t_64_r20ohm,...]

Every shipped table, seven pattern families, 4,096 fresh ngspice columns each (seed 7373), both ADC references
(cosim.study.validation_report). The SPICE runs are kept under --work and reused by a rerun.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim.study.validation_report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
