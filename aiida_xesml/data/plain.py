"""Storing an estimator's ``to_arrays()`` output on an ArrayData node: numbers and strings only."""

import numpy as np


def set_plain_arrays(node, arrays: dict) -> None:
    """Set every array of ``arrays`` on ``node``, refusing object arrays (they would need a pickle)."""
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype == object:
            raise ValueError(f"array `{name}` has dtype object; only plain numeric or string arrays may be stored")
        node.set_array(name, array)
