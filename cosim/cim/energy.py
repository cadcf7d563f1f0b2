"""Array energy of a network run: the read energy of the crossbars, from calibrated currents.

Each array read drives its column currents for one read time at the read voltage, so

    E_array = sum over reads and columns of I_column x v_read_v x t_read_s

with ``v_read_v`` and ``t_read_s`` from the technology (cosim.circuit.technology) and the column currents from
the array model: the surrogate's non-ideal currents (calibrated on SPICE), or, in ideal mode, ON cells x
i_cell_a plus leaking (input 1, weight 0) cells x i_off_a with the unit currents of the lookup table.
Peripheral energy (ADCs, drivers, digital accumulation) is not included: that is the study's cost model.
Partial wordline activation counts every sub-read (same t_read_s each).
"""

from __future__ import annotations


def array_energy_j(current_sum_a: float | None, v_read_v: float | None, t_read_s: float | None) -> float | None:
    """Energy (J) of reads whose column currents sum to ``current_sum_a`` (A); None when unknown."""
    if current_sum_a is None or v_read_v is None or t_read_s is None:
        return None
    return float(current_sum_a) * float(v_read_v) * float(t_read_s)
