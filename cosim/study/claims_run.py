"""The cells the claims table names, run again on ``claims_limit`` test images (issue 18).

The grid runs every cell on ``limit`` images (1,000 by default); the claims table then cites some of them
(each accuracy claim's best, worst and cited cells, and the cells they are compared with:
``report.claim_cells``). Those are run again on ``claims_limit`` images (all 10,000 by default), as cells
of their own (cached like any other), and take the place of their ``limit``-image results in the report.
The choice of the cells is made on the grid's images; the judgement is then on the larger set. With
``--from-cache`` nothing is computed: a cited cell without a cached large run keeps its grid result, and
the report says how many.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import stats


def refine_claim_cells(res, ctx, *, from_cache: bool = False, committed: list[Path] | None = None,
                       progress: bool = False, executor: Any = None, timeout_s: float | None = None):
    """``res`` with the cells the claims cite replaced by their runs on ``config.claims_limit`` images
    (where that is more than ``config.limit``); ``res.claims_note`` says what was done."""
    from . import report, runner

    cfg = res.config
    if cfg.claims_limit <= cfg.limit:
        return res
    named = [i for i in report.claim_cells(res) if res.cells[i].result is not None
             and int(res.cells[i].result.get("n", 0)) < cfg.claims_limit]
    if not named:
        return res
    big_ctx = ctx.with_limit(cfg.claims_limit)
    big = [dataclasses.replace(res.cells[i].cell, limit=cfg.claims_limit) for i in named]
    if from_cache:
        got = report.read_cached_cells(big, big_ctx, committed=committed)
    else:
        got = runner.run_cells(big, big_ctx, progress=progress, executor=executor, timeout_s=timeout_s)
    cells = list(res.cells)
    missing, replaced = [], []
    for i, r in zip(named, got):
        if r.result is not None:
            replaced.append(cells[i])
            cells[i] = r
        else:
            missing.append((f"`{res.cells[i].cell.label()}`", r.reason))
    done = len(named) - len(missing)
    note = (f"The {len(named)} cell(s) the claims table names (each claim's best, worst and cited cells and the "
            f"cells they are compared with, chosen on the grid's {cfg.limit} images) were run again on "
            f"{stats.describe_images(cfg.claims_limit)}: {done} with a result, which the claims and tables use")
    if missing:
        note += (f"; {len(missing)} without one keep their {cfg.limit}-image result ("
                 + ("not in the cell cache: --from-cache computes nothing" if from_cache else missing[0][1]) + "): "
                 + ", ".join(m for m, _ in missing[:6]) + (" ..." if len(missing) > 6 else ""))
    return dataclasses.replace(res, cells=cells, claims_note=note + ".", grid_cells=list(res.grid_cells) + replaced)
