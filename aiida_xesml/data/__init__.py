"""AiiDA data classes: arrays plus attributes, never pickles, so archives load without this code."""

from .spectra import XesSpectraData

__all__ = ("XesSpectraData",)
