"""The surrogate: lookup tables fitted to circuit points, and their fast replay.

* ``model``      -- the surrogate's model: variables, basis, terms, features (numpy and torch alike);
* ``fit``        -- calibration: the fit of a table's model to a calibration sweep (cosim.sweep.calibration);
* ``tables``     -- lookup tables (named arrays plus provenance) in Parquet;
* ``registry``   -- one table registry: naming, lookup by (technology, rows, wire resistance, topology),
                    the model form per table;
* ``adc``        -- the column ADC (ideal or calibrated references);
* ``evaluate``   -- the vectorised torch surrogate: column currents and ADC codes of whole batches;
* ``kernel``     -- its fused CPU kernel (``kernel.c``, compiled on first use; a torch fallback);
* ``validate``   -- agreement of a table's surrogate with fresh SPICE points;
* ``netslices``  -- crossbar operands of a trained network (the ``network`` validation family).
"""
