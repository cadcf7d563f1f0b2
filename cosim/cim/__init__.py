"""Whole-network compute-in-memory inference: mapping onto crossbars, array models, BinSparX, statistics.

    from cosim.cim import to_cim, cim_stats
    cim = to_cim(model, tech="sram8t", rows=64, cols=64, mode="surrogate", binsparx=True)
"""

from .arrays import ArrayModel, IdealArray
from .convert import MODES, cim_layers, cim_stats, convert, reset_stats, to_cim
from .hooks import BinaryMapping, register_binary_layer
from .layers import CiMConv2d, CiMLinear, CrossbarMatrix
from .mapping import TileMap
from .spot import run_spot_checks, select_spot_tiles

__all__ = ["ArrayModel", "IdealArray", "MODES", "cim_layers", "cim_stats", "convert", "reset_stats", "to_cim",
           "CiMConv2d", "CiMLinear", "CrossbarMatrix", "BinaryMapping", "register_binary_layer", "TileMap", "run_spot_checks", "select_spot_tiles"]
