"""``xesml.emulator``: a trained emulator (and its ensemble) as plain numeric arrays (never a pickle)."""

from __future__ import annotations

import numpy as np
from aiida import orm

from .plain import set_plain_arrays

#: Array-name prefix of the ensemble members (``member_<i>__<name>``, as ml.emulator.ensemble_to_arrays writes).
MEMBER_PREFIX = "member_"
#: Array of the descriptor columns the emulator reads (its feature set); absent: all columns.
FEATURE_COLUMNS = "feature_columns"


class EmulatorData(orm.ArrayData):
    """An :class:`aiida_xesml.ml.emulator.MLPEmulator` stored as the arrays of its ``to_arrays()``, with
    the ensemble of emulators that gives the reconstruction its error bars.

    Arrays: the emulator's own (``coef_<i>``, ``intercept_<i>``, scalers, ``activation``), the members'
    as ``member_<i>__<name>`` (member 0 is the emulator itself), and ``feature_columns`` (the descriptor
    columns the emulator reads; absent on nodes made before feature sets existed: all columns).
    Attributes: ``settings`` (the training settings), ``metrics`` (held-out Pearson r, R² and RMSE per
    target, as lists in target order, with ``split``: how the held-out rows were chosen),
    ``metrics_by_target`` ({name: {pearson_r, r2, rmse}}), ``pearson_r_min`` (the worst target's r),
    ``target_names``, ``n_features`` (descriptor columns read), ``n_outputs``, ``kind`` ('network' or
    'ridge'), ``feature_set``, ``n_members``, ``selection`` (the cross-validation record of the model
    choice), ``verdict`` (one sentence: which model won, and whether the network beat the baseline).
    Loading needs numpy only: ``get_emulator()`` and ``get_members()``.
    """

    def set_emulator(self, emulator, settings: dict | None = None, metrics: dict | None = None,
                     target_names=None, members=None, feature_columns=None, kind: str | None = None,
                     feature_set: str | None = None, selection: dict | None = None, verdict: str | None = None) -> None:
        from aiida_xesml.ml.emulator import ensemble_to_arrays

        set_plain_arrays(self, emulator.to_arrays())
        if members:
            set_plain_arrays(self, ensemble_to_arrays(members))
        if feature_columns is not None:
            self.set_array(FEATURE_COLUMNS, np.asarray(feature_columns, dtype=int))
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
        self.base.attributes.set("n_members", len(members) if members else 1)
        for key, value in (("kind", kind), ("feature_set", feature_set), ("selection", selection), ("verdict", verdict)):
            if value is not None:
                self.base.attributes.set(key, value)

    def _arrays(self, keep) -> dict:
        return {name: self.get_array(name) for name in self.get_arraynames() if keep(name)}

    def get_emulator(self):
        """The stored emulator as an :class:`~aiida_xesml.ml.emulator.MLPEmulator`."""
        from aiida_xesml.ml.emulator import MLPEmulator

        return MLPEmulator.from_arrays(self._arrays(lambda name: not name.startswith(MEMBER_PREFIX)
                                                    and name != FEATURE_COLUMNS))

    def get_members(self) -> list:
        """The ensemble (member 0 first); a node without members gives ``[get_emulator()]``."""
        from aiida_xesml.ml.emulator import ensemble_from_arrays

        arrays = self._arrays(lambda name: name.startswith(MEMBER_PREFIX))
        return ensemble_from_arrays(arrays) if arrays else [self.get_emulator()]

    @property
    def feature_columns(self) -> np.ndarray | None:
        """Descriptor columns the emulator reads, or None for all of them (nodes made before feature sets)."""
        return self.get_array(FEATURE_COLUMNS) if FEATURE_COLUMNS in self.get_arraynames() else None

    def select_features(self, descriptors) -> np.ndarray:
        """The emulator's inputs from full descriptors (n, N(N+1)/2)."""
        descriptors = np.asarray(descriptors, dtype=float)
        columns = self.feature_columns
        return descriptors if columns is None else descriptors[:, columns]

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

    @property
    def verdict(self) -> str | None:
        return self.base.attributes.get("verdict", None)
