"""The BinSparX study: the grid (config), its cached runner, skew statistics, the cost model and the report.

One module per step, each importable without the ones after it:

* ``config``  -- the grid, described by one TOML file (defaults = the full grid, ``[quick]`` a subset);
* ``runner``  -- runs grid cells through the CiM inference API, each cell cached on disk with provenance;
* ``stats``   -- Wilson intervals, exact McNemar tests and Newcombe intervals of paired differences, the
  stop-at-chance rule, packed per-image outcomes, class-balanced image indices;
* ``claims_run`` -- the cells the claims table names, run again on ``claims_limit`` test images;
* ``skew``    -- per-layer +1 fractions of weights and activations, ON-count histograms under the fixed
  encodings (+1 conducting, mirrored) and under BinSparX's flips;
* ``costs``   -- array energy from calibrated currents, peripheral energy / latency / area from a
  documented per-component table;
* ``report``  -- ``docs/REPORT.md`` with the claims table, accuracy tables, PNG plots, CSV/Parquet;
* ``multibit`` -- binary against 2- and 4-bit networks on the same arrays, ``docs/MULTIBIT.md``
  (``scripts/multibit_study.py``);
* ``validation_report`` -- every shipped table against fresh SPICE, ``docs/VALIDATION.md``
  (``scripts/make_validation_report.py``);
* ``markdown`` -- what the Markdown documents share: tables, number formats, the provenance line.
"""
