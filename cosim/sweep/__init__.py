"""Sweeps of circuit points: where they run and where their results are kept.

* ``executor``    -- one executor for every sweep (local processes or a Dask cluster);
* ``store``       -- the one result store: keyed records of arrays and JSON metadata, written atomically;
* ``pointcache``  -- a content-addressed store of SPICE points, one file per point, written atomically;
* ``points``      -- sweeps of SPICE points through an executor and the point cache, with convergence aids;
* ``calibration`` -- the calibration sweep: its design, its runner, the ngspice cross-check, its points' reader.
"""
