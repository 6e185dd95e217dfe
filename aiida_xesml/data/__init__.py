"""AiiDA data classes: arrays plus attributes, never pickles, so archives load without this code."""

from .dataset import XesDatasetData
from .eca import XesEcaData
from .emulator import EmulatorData
from .spectra import XesSpectraData

__all__ = ("EmulatorData", "XesDatasetData", "XesEcaData", "XesSpectraData")
