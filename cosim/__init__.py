"""cosim: SPICE-backed co-simulation of compute-in-memory BNN accelerators.

The package follows the data; each folder is one step and imports only the steps before it
(``tests/test_layout.py`` checks this):

    circuit/     technology registry (technology files), cell kinds (cells.py: the built-ins, cells as
                 Python classes or as SPICE subcircuit files), device models, netlist generator, ngspice
                 runners (spice/), exact nodal solve of linear arrays, the exact nonlinear array solver
    sweep/       one executor (local processes or Dask), the one result store and the content-addressed
                 point cache on it, sweeps of SPICE points, the calibration sweep
    surrogate/   the surrogate's model and its fit (calibration), lookup tables and their registry, ADC,
                 the torch surrogate and its compiled kernel, validation against fresh SPICE
    bnn/         CIFAR-10 loading, binary networks, training, evaluation, checkpoints
    cim/         networks on crossbars: exact bit products, tiling, array models, ADC, BinSparX
    study/       the BinSparX study grid, its runner, cost model and report; the multibit study and the
                 validation report (docs/MULTIBIT.md, docs/VALIDATION.md), their shared Markdown helpers
    commands/    the ``cosim`` command line, one module per subcommand

Beside them: ``errors`` (one-line errors), ``paths`` (where files are found), ``provenance``,
``fileio`` (atomic writes), ``cbuild`` (compiled helpers) and ``orphans`` (no stray processes).
``device_models/`` (top-level folder) holds the ngspice model files the project writes.
"""

__version__ = "0.1.0"
