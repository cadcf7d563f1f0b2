"""cosim: SPICE-backed co-simulation of compute-in-memory BNN accelerators.

The package follows the data, one module per step:

    technology      registry of device/wire parameters, with the source of every default
    device_models   (top-level folder) ngspice model files written by the project
    netlist         crossbar netlist generator
    spice           ngspice runners (PySpice shared library, ngspice -b subprocess)
    nodal           exact nodal solve of linear arrays (independent check of SPICE)
    tables, surrogate, adc, calibrate, validate   SPICE-calibrated lookup tables and the torch surrogate
    data, bnn       CIFAR-10 loading, binary networks, training, evaluation
    cim             mapping networks onto crossbars (tiling, ADC, BinSparX)
"""

__version__ = "0.1.0"
