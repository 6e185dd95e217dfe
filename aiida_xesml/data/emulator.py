"""``xesml.emulator``: a trained MLPEmulator as plain numeric arrays (never a pickle)."""

from __future__ import annotations

import numpy as np
from aiida import orm

from .plain import set_plain_arrays


class EmulatorData(orm.ArrayData):
    """An :class:`aiida_xesml.ml.emulator.MLPEmulator` stored as the arrays of its ``to_arrays()``.

    Attributes: ``settings`` (hyper-parameters, seed, split), ``metrics`` (held-out Pearson r, R² and
    RMSE per target, as lists in target order), ``metrics_by_target`` ({name: {pearson_r, r2, rmse}}),
    ``pearson_r_min`` (the worst target's r), ``target_names``, ``n_features`` and ``n_outputs``. Loading needs numpy only:
    ``get_emulator()`` rebuilds the estimator with :meth:`MLPEmulator.from_arrays`.
    """

    def set_emulator(self, emulator, settings: dict | None = None, metrics: dict | None = None,
                     target_names=None) -> None:
        set_plain_arrays(self, emulator.to_arrays())
        self.base.attributes.set("settings", dict(settings or {}))
        metrics = dict(metrics or {})
        names = list(target_names) if target_names is not None else []
        self.base.attributes.set("metrics", metrics)
        self.base.attributes.set("target_names", names)
        # Scalars per target and the worst Pearson r, so that QueryBuilder can filter on them.
        per_target = {name: {key: metrics[key][i] for key in ("pearson_r", "r2", "rmse") if key in metrics}
                      for i, name in enumerate(names)}
        self.base.attributes.set("metrics_by_target", per_target)
        defined = [float(v) for v in metrics.get("pearson_r") or [] if v is not None and np.isfinite(v)]
        if defined:
            self.base.attributes.set("pearson_r_min", min(defined))
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
    def target_names(self) -> list[str]:
        return self.base.attributes.get("target_names", [])

    @property
    def n_features(self) -> int:
        return self.base.attributes.get("n_features")
