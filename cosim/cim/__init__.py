"""Whole-network compute-in-memory inference: mapping onto crossbars, array models, BinSparX, statistics.

    from cosim.cim import to_cim, cim_stats
    cim = to_cim(model, tech="sram8t", rows=64, cols=64, mode="surrogate", binsparx=True)
    config = CiMConfig.from_kwargs(tech="sram8t", rows=64, cols=64, mode="surrogate", binsparx=True)
    cim = to_cim(model, config)                   # the same; cim.cim_config is config, config.digest() a cache key
"""

from .arrays import ArrayModel, IdealArray
from .config import ADCConfig, ArrayConfig, CiMConfig, MappingConfig, RunConfig
from .convert import MODES, cim_layers, cim_stats, convert, reset_stats, to_cim
from .hooks import BinaryMapping, register_binary_layer
from .layers import CiMConv2d, CiMLinear, CrossbarMatrix
from .mapping import TileMap
from .spot import run_spot_checks, select_spot_tiles

__all__ = ["ArrayModel", "IdealArray", "ADCConfig", "ArrayConfig", "CiMConfig", "MappingConfig", "RunConfig", "MODES", "cim_layers", "cim_stats", "convert", "reset_stats", "to_cim",
           "CiMConv2d", "CiMLinear", "CrossbarMatrix", "BinaryMapping", "register_binary_layer", "TileMap", "run_spot_checks", "select_spot_tiles"]
