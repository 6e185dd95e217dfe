"""``xesml.dataset``: descriptors and spectral moments of emitting sites, row by row."""

from __future__ import annotations

import numpy as np
from aiida import orm

from aiida_xesml.ml.validation import as_finite_array, check_matching_rows

from .plain import set_label_attributes


class XesDatasetData(orm.ArrayData):
    """Training data of the emulator.

    Arrays: ``descriptors`` (n, d) local Coulomb matrices (e²/Å units, SCIENCE.md §4); ``moments``
    (n, m) spectral moments (M0 in states, M1 and M2 in eV, M3 dimensionless); ``snapshot_index``,
    ``site_index`` (n,) where each row comes from; ``label`` (n,) a number per row, e.g. the
    pressure in GPa (NaN when unset). Attributes: ``moment_names``, ``descriptor`` (n_atoms,
    species), ``windows`` (eV), ``labels`` (sorted distinct labels), ``label_min``, ``label_max``,
    ``n_rows``, ``n_features``.
    """

    def set_dataset(self, descriptors, moments, snapshot_index, site_index, label=None, moment_names=None,
                    descriptor: dict | None = None, windows: dict | None = None) -> None:
        """Store the rows; every row array must have one entry per descriptor row."""
        x = as_finite_array(descriptors, "descriptors", ndim=2)
        y = as_finite_array(moments, "moments", ndim=2)
        check_matching_rows(x, "descriptors", y, "moments")
        rows = {
            "snapshot_index": np.asarray(snapshot_index, dtype=int),
            "site_index": np.asarray(site_index, dtype=int),
            "label": np.full(len(x), np.nan) if label is None else np.asarray(label, dtype=float),
        }
        for name, values in rows.items():
            if values.shape != (len(x),):
                raise ValueError(f"`{name}` has shape {values.shape}; expected ({len(x)},), one per row")
        self.set_array("descriptors", x)
        self.set_array("moments", y)
        for name, values in rows.items():
            self.set_array(name, values)
        names = list(moment_names) if moment_names is not None else [f"y{i}" for i in range(y.shape[1])]
        if len(names) != y.shape[1]:
            raise ValueError(f"`moment_names` has {len(names)} names for {y.shape[1]} moment columns")
        self.base.attributes.set("moment_names", names)
        self.base.attributes.set("descriptor", dict(descriptor or {}))
        self.base.attributes.set("windows", dict(windows or {}))
        self.base.attributes.set("n_rows", int(len(x)))
        self.base.attributes.set("n_features", int(x.shape[1]))
        set_label_attributes(self, rows["label"])

    @property
    def descriptors(self) -> np.ndarray:
        return self.get_array("descriptors")

    @property
    def moments(self) -> np.ndarray:
        return self.get_array("moments")

    @property
    def snapshot_index(self) -> np.ndarray:
        return self.get_array("snapshot_index")

    @property
    def site_index(self) -> np.ndarray:
        return self.get_array("site_index")

    @property
    def row_labels(self) -> np.ndarray:
        """Array ``label`` (n,): the number of each row, e.g. GPa (the node's own ``label`` stays aiida's)."""
        return self.get_array("label")

    @property
    def moment_names(self) -> list[str]:
        return self.base.attributes.get("moment_names")

    def get_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(descriptors, moments)``: the emulator's X (n, d) and Y (n, m), rows in the stored order."""
        return self.descriptors, self.moments

    @property
    def n_features(self) -> int:
        return self.base.attributes.get("n_features")

    @property
    def n_rows(self) -> int:
        return self.base.attributes.get("n_rows")
