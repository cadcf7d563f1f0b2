* The ohmic 1T-1R cell of examples/cells/ohmic1t1r.py, as SPICE subcircuits and no Python: an ohmic memory
* element (r_on_ohm for a stored 1, r_off_ohm for a 0) from the drive pin a to the inner node m, and an ASAP7
* access FinFET (finfet7.lib, the B-source model) from m to the sense pin b, its gate ctl the input.
* A technology parameter's name in braces is a placeholder, filled from the technology file when the deck is written.
.subckt ohm1 a ctl b
Rm a m {r_on_ohm}
Xt m ctl b nfet_{fet_flavour} nfin={fet_nfin}
.ends
.subckt ohm0 a ctl b
Rm a m {r_off_ohm}
Xt m ctl b nfet_{fet_flavour} nfin={fet_nfin}
.ends
