"""Helpers of the data classes: plain arrays on ArrayData nodes, and label attributes for queries."""

import numpy as np


def set_plain_arrays(node, arrays: dict) -> None:
    """Set every array of ``arrays`` on ``node``, refusing object arrays (they would need a pickle)."""
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype == object:
            raise ValueError(f"array `{name}` has dtype object; only plain numeric or string arrays may be stored")
        node.set_array(name, array)


def set_label_attributes(node, label) -> None:
    """Attributes ``labels`` (sorted distinct finite row labels, e.g. GPa), ``label_min`` and
    ``label_max`` (None without finite labels), so that QueryBuilder can select nodes by label.
    NaN labels are left out: the database stores no NaN."""
    label = np.asarray(label, dtype=float)
    finite = label[np.isfinite(label)]
    node.base.attributes.set("labels", sorted({float(v) for v in finite}))
    node.base.attributes.set("label_min", float(finite.min()) if len(finite) else None)
    node.base.attributes.set("label_max", float(finite.max()) if len(finite) else None)
