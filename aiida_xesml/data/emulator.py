"""``xesml.emulator``: a trained MLPEmulator as plain numeric arrays (never a pickle)."""

from __future__ import annotations

import numpy as np
from aiida import orm


class EmulatorData(orm.ArrayData):
    """An :class:`aiida_xesml.ml.emulator.MLPEmulator` stored as the arrays of its ``to_arrays()``.

    Attributes: ``settings`` (hyper-parameters, seed, split), ``metrics`` (held-out Pearson r and R²
    per target), ``target_names``, ``n_features`` and ``n_outputs``. Loading needs numpy only:
    ``get_emulator()`` rebuilds the estimator with :meth:`MLPEmulator.from_arrays`.
    """

    def set_emulator(self, emulator, settings: dict | None = None, metrics: dict | None = None,
                     target_names=None) -> None:
        arrays = emulator.to_arrays()
        for name, array in arrays.items():
            array = np.asarray(array)
            if array.dtype == object:
                raise ValueError(f"array `{name}` has dtype object; only plain numeric or string arrays may be stored")
            self.set_array(name, array)
        self.base.attributes.set("settings", dict(settings or {}))
        self.base.attributes.set("metrics", dict(metrics or {}))
        self.base.attributes.set("target_names", list(target_names) if target_names is not None else [])
        self.base.attributes.set("n_features", int(emulator.n_features_in_))
        self.base.attributes.set("n_outputs", int(emulator.n_outputs_))

    def get_emulator(self):
        """The stored emulator as an :class:`~aiida_xesml.ml.emulator.MLPEmulator`."""
        from aiida_xesml.ml.emulator import MLPEmulator

        return MLPEmulator.from_arrays({name: self.get_array(name) for name in self.get_arraynames()})

    @property
    def metrics(self) -> dict:
        return self.base.attributes.get("metrics", {})

    @property
    def settings(self) -> dict:
        return self.base.attributes.get("settings", {})

    @property
    def n_features(self) -> int:
        return self.base.attributes.get("n_features")
