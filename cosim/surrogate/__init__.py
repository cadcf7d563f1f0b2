"""The surrogate: lookup tables fitted to circuit points, and their fast replay.

* ``fit``        -- calibration: the sweep design and the fit of a table's model;
* ``tables``     -- lookup tables (named arrays plus provenance) in Parquet;
* ``adc``        -- the column ADC (ideal or calibrated references);
* ``evaluate``   -- the vectorised torch surrogate: column currents and ADC codes of whole batches;
* ``kernel``     -- its fused CPU kernel (compiled C, with a torch fallback);
* ``validate``   -- agreement of a table's surrogate with fresh SPICE points;
* ``netslices``  -- crossbar operands of a trained network (the ``network`` validation family).
"""
