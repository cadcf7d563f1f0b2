"""Statistics of a network run on crossbars, per layer and overall.

Counted over real (mapped) cells only: unused rows and columns of a tile are not cells of the layer.

- ``on_cell_fraction``: conducting cells (input +1 and stored +1, after BinSparX flips) over all real
  cells read, summed over every array read;
- ``mean_on_count`` / ``max_on_count``: the AND-count of one column in one read (true count, not the
  ADC's estimate), mean over every read and real column; the maximum over the reads of every k-th
  input vector (``max_stride`` k of the conversion, 8 by default; 1 for all);
- ``on_count_without_binsparx`` and ``partial_sum_reduction`` = 1 - (sum of AND-counts with the flips)
  / (sum without them): how much smaller the analog partial sums (column currents) get;
- ``flipped_column_fraction`` (static weight flips over real column slices) and
  ``flipped_subvector_fraction`` (dynamic input flips over input sub-vectors applied);
- ``active_row_fraction`` and ``stored_one_fraction``: rows on and cells storing 1;
- ``array_reads``: array activations (one input vector on one crossbar; partial wordline activation
  counts each sub-read); ``array_energy_j``: sum over reads of column currents x v_read x t_read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .energy import array_energy_j


@dataclass
class LayerStats:
    name: str = ""
    rows: int = 0
    cols: int = 0
    row_tiles: int = 0
    col_tiles: int = 0
    vectors: int = 0                 #: input vectors (output positions x images)
    array_reads: int = 0             #: activations of one crossbar by one input vector (incl. sub-reads)
    column_reads: int = 0            #: real columns read (vectors x row tiles x C_out)
    real_cells_read: float = 0.0     #: sum over reads of real cells (n_t x real columns)
    on_cells: float = 0.0            #: conducting cells, summed over reads
    on_cells_unflipped: float = 0.0  #: the same without BinSparX flips
    active_rows: float = 0.0         #: rows driven (+1 inputs after flips), summed over (vector, row tile)
    real_rows_read: float = 0.0      #: real rows, summed over (vector, row tile)
    stored_ones: float = 0.0         #: cells storing 1 (after flips), per mapping
    real_cells: float = 0.0          #: real cells of the mapping
    max_on_count: float = 0.0
    flipped_columns: float = 0.0
    column_slices: float = 0.0
    flipped_subvectors: float = 0.0
    subvectors: float = 0.0
    current_sum_a: float | None = 0.0  #: sum over reads and columns of column currents (A); None: unknown
    v_read_v: float | None = None
    t_read_s: float | None = None
    extra: dict = field(default_factory=dict)

    #: the counts one run of images adds to (the rest describe the mapping and stay as they are)
    RUN_FIELDS = ("vectors", "array_reads", "column_reads", "real_cells_read", "on_cells", "on_cells_unflipped",
                  "active_rows", "real_rows_read", "flipped_subvectors", "subvectors")

    def add_run(self, other: "LayerStats") -> None:
        """Add the counts of another run of the same layer (another process's images, say)."""
        if (other.name, other.rows, other.cols, other.row_tiles, other.col_tiles) != \
                (self.name, self.rows, self.cols, self.row_tiles, self.col_tiles):
            raise ValueError(f"statistics of layer {other.name!r} do not belong to layer {self.name!r}")
        for f in self.RUN_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.max_on_count = max(self.max_on_count, other.max_on_count)
        self.add_current(other.current_sum_a)

    def add_current(self, current_a: float | None) -> None:
        if current_a is None or self.current_sum_a is None:
            self.current_sum_a = None
        else:
            self.current_sum_a += current_a

    def summary(self) -> dict:
        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        energy = array_energy_j(self.current_sum_a, self.v_read_v, self.t_read_s)
        red = None
        if self.on_cells_unflipped:
            red = 1.0 - self.on_cells / self.on_cells_unflipped
        out = {
            "name": self.name, "row_tiles": self.row_tiles, "col_tiles": self.col_tiles,
            "arrays": self.row_tiles * self.col_tiles,
            "vectors": self.vectors, "array_reads": self.array_reads,
            "on_cell_fraction": ratio(self.on_cells, self.real_cells_read),
            "mean_on_count": ratio(self.on_cells, self.column_reads),
            "max_on_count": self.max_on_count,
            "mean_on_count_without_binsparx": ratio(self.on_cells_unflipped, self.column_reads),
            "partial_sum_reduction": red,
            "active_row_fraction": ratio(self.active_rows, self.real_rows_read),
            "stored_one_fraction": ratio(self.stored_ones, self.real_cells),
            "flipped_column_fraction": ratio(self.flipped_columns, self.column_slices),
            "flipped_subvector_fraction": ratio(self.flipped_subvectors, self.subvectors),
            "array_energy_j": energy,
        }
        out.update(self.extra)
        return out


def overall(layers: list[LayerStats]) -> dict:
    """Totals over layers (ratios of sums, so big layers weigh by their reads)."""
    tot = LayerStats(name="overall")
    for s in layers:
        for f in LayerStats.RUN_FIELDS + ("stored_ones", "real_cells", "flipped_columns", "column_slices"):
            setattr(tot, f, getattr(tot, f) + getattr(s, f))
        tot.max_on_count = max(tot.max_on_count, s.max_on_count)
    energies = [s.summary()["array_energy_j"] for s in layers]
    out = tot.summary()
    out.pop("name"), out.pop("row_tiles"), out.pop("col_tiles")
    out["arrays"] = sum(s.row_tiles * s.col_tiles for s in layers)
    out["array_energy_j"] = None if (not layers or any(e is None for e in energies)) else float(sum(energies))
    return out
