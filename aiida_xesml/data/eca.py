"""``xesml.eca``: a fitted emulator-based component analysis as plain arrays (never a pickle)."""

from __future__ import annotations

import numpy as np
from aiida import orm

from .plain import set_plain_arrays

FEATURE_COLUMNS = "feature_columns"
DESCRIPTOR_MEAN = "descriptor_mean"


class XesEcaData(orm.ArrayData):
    """An :class:`aiida_xesml.ml.eca.ECA` stored as the arrays of its ``to_arrays()``.

    Arrays: ``components`` (k, d) orthonormal directions in standardized descriptor space,
    ``covered_variance`` (k,) cumulative share of the standardized moments' variance that the first
    components explain, ``covered_variance_x`` (k,) the same for the descriptors, the training
    scores' ``scores_mean`` and ``scores_std``, and the emulator's arrays as ``emulator__*``.
    ``feature_columns`` (the descriptor columns the emulator reads; absent: all) and ``descriptor_mean``
    (the mean full descriptor of the fitted rows, for the columns the emulator does not read).
    Attributes: ``n_components``, ``n_features`` (emulator inputs), ``covered_variance`` (list, for queries; on
    the rows ECA was fitted on), ``covered_variance_held_out`` and ``covered_variance_x_held_out`` (on the
    emulator's held-out rows),
    ``settings``, ``target_names`` and ``target_r2`` (the emulator's held-out R² per target). ``get_eca()``
    rebuilds the estimator with numpy only.
    """

    def set_eca(self, eca, settings: dict | None = None, target_names=None, target_r2=None, feature_columns=None,
                descriptor_mean=None) -> None:
        """Store ``eca``; ``target_names`` and the emulator's held-out ``target_r2`` weigh the inverse.

        :param feature_columns: the descriptor columns the emulator reads (None: all).
        :param descriptor_mean: (N(N+1)/2,) mean full descriptor of the rows ECA was fitted on: the columns the
            emulator does not read take these values when a reconstruction is expanded into a pseudo-matrix.
        """
        # ArrayData names allow letters, digits and underscores only: "emulator.coef_0" -> "emulator__coef_0".
        set_plain_arrays(self, {name.replace(".", "__"): value for name, value in eca.to_arrays().items()})
        for name, value in ((FEATURE_COLUMNS, feature_columns), (DESCRIPTOR_MEAN, descriptor_mean)):
            if value is not None:
                self.set_array(name, np.asarray(value, dtype=int if name == FEATURE_COLUMNS else float))
        self.base.attributes.set("n_components", int(len(eca.components_)))
        self.base.attributes.set("n_features", int(eca.components_.shape[1]))
        self.base.attributes.set("covered_variance", [float(v) for v in eca.covered_variance_])
        self.base.attributes.set("covered_variance_x", [float(v) for v in eca.covered_variance_x_])
        self.base.attributes.set("settings", dict(settings or {}))
        self.base.attributes.set("target_names", list(target_names or []))
        # None: R² undefined for that target (constant over the emulator's held-out rows)
        self.base.attributes.set("target_r2", [None if v is None else float(v) for v in target_r2]
                                 if target_r2 is not None else [])

    def get_eca(self):
        """The stored ECA (with its emulator) as an :class:`~aiida_xesml.ml.eca.ECA`."""
        from aiida_xesml.ml.eca import ECA

        return ECA.from_arrays({name.replace("__", "."): self.get_array(name) for name in self.get_arraynames()
                                if name not in (FEATURE_COLUMNS, DESCRIPTOR_MEAN)})

    @property
    def covered_variance(self) -> list[float]:
        return self.base.attributes.get("covered_variance")

    @property
    def covered_variance_x(self) -> list[float]:
        return self.base.attributes.get("covered_variance_x")

    @property
    def target_names(self) -> list[str]:
        return self.base.attributes.get("target_names", [])

    @property
    def target_r2(self) -> list[float]:
        """The emulator's held-out R² per target (empty when unknown)."""
        return self.base.attributes.get("target_r2", [])

    @property
    def feature_columns(self):
        """Descriptor columns the ECA's emulator reads, or None for all of them."""
        return self.get_array(FEATURE_COLUMNS) if FEATURE_COLUMNS in self.get_arraynames() else None

    @property
    def descriptor_mean(self):
        """Mean full descriptor of the rows ECA was fitted on, or None (nodes made before feature sets)."""
        return self.get_array(DESCRIPTOR_MEAN) if DESCRIPTOR_MEAN in self.get_arraynames() else None

    @property
    def covered_variance_held_out(self) -> list[float]:
        """Cumulative covered variance of the moments on the emulator's held-out rows (empty when none)."""
        return self.base.attributes.get("covered_variance_held_out", [])

    @property
    def n_components(self) -> int:
        return self.base.attributes.get("n_components")

    @property
    def n_features(self) -> int:
        return self.base.attributes.get("n_features")
