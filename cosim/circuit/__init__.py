"""The circuit: technology parameters, device models, crossbar netlists, and their solution.

* ``technology``   -- registry of every device, wire and circuit parameter, with its source;
* ``devices``      -- the ngspice device-model files and the Python side of the FinFET fit;
* ``bsimcmg``      -- the PDK's compact model (BSIM-CMG through OSDI) as an alternative device model;
* ``netlist``      -- whole-array ngspice decks with wire parasitics;
* ``spice``        -- ngspice runners (shared library through PySpice, or ``ngspice -b``) and detection;
* ``nodal``        -- exact nodal solve of linear arrays (an independent check of the decks);
* ``solver``       -- exact DC operating point of nonlinear arrays (C kernel ``solver_kernel``, torch
  ``solver_torch``).
"""
