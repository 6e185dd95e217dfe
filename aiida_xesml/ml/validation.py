"""Input checks shared by the core modules.

Every public core function validates its arguments with these helpers so that bad input gives a
``ValueError`` that names the argument and says what was expected, instead of a NaN or an obscure
numpy error three calls deeper.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils._param_validation import validate_parameter_constraints


def as_finite_array(value, name: str, *, ndim: int | tuple[int, ...] | None = None,
                    dtype=float) -> np.ndarray:
    """Return ``value`` as a numpy array, checking dimensionality and finiteness.

    :param value: anything ``numpy.asarray`` accepts.
    :param name: the argument's name, used in the error message.
    :param ndim: the allowed number of dimensions (an int or a tuple of ints); None allows any.
    :param dtype: the dtype to convert to.
    :raises ValueError: when the value cannot be converted, has the wrong number of dimensions, is
        empty, or holds NaN or inf.
    """
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be numeric array-like; got {type(value).__name__}: {exc}") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            expected = " or ".join(f"{n}-D" for n in allowed)
            raise ValueError(f"`{name}` must be {expected}; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape}); it needs at least one value")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"`{name}` holds {bad} NaN or inf value(s); clean the input first")
    return array


def check_matching_rows(a: np.ndarray, name_a: str, b: np.ndarray, name_b: str) -> None:
    """Raise a ValueError unless ``a`` and ``b`` have the same number of rows (first axis)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"`{name_a}` has {a.shape[0]} rows but `{name_b}` has {b.shape[0]}; they must describe "
            "the same samples in the same order"
        )


def check_training_rows(X, Y, groups=None, *, y_ndim: int | tuple[int, ...] = 2):
    """The finite design matrix ``X`` (n, d), targets ``Y`` (n, m; a 1-D ``Y`` becomes one column when
    ``y_ndim`` allows it) and, when given, ``groups`` (n,): one snapshot id per row, by which folds and
    held-out sets are split. Returns ``(X, Y, groups)`` as arrays.

    :raises ValueError: naming ``X``, ``Y`` or ``groups``.
    """
    X = as_finite_array(X, "X", ndim=2)
    Y = as_finite_array(Y, "Y", ndim=y_ndim)
    Y = Y[:, None] if Y.ndim == 1 else Y
    check_matching_rows(X, "X", Y, "Y")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(X),):
            raise ValueError(f"`groups` has shape {groups.shape}; expected ({len(X)},), one snapshot id per row")
    return X, Y, groups


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as a float, raising a ValueError unless it is finite and > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a positive number; got {value!r}") from exc
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive number; got {value!r}")
    return value


def check_integer(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, raising a ValueError unless it is a whole number in [minimum, maximum].

    Booleans are refused; a float with an integral value (``20.0``) is accepted.
    """
    integral = isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating))
                                                        and np.isfinite(value) and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not integral:
        raise ValueError(f"`{name}` must be a whole number; got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (f"in [{minimum}, {maximum}]" if minimum is not None and maximum is not None
                  else f">= {minimum}" if minimum is not None else f"<= {maximum}")
        raise ValueError(f"`{name}` must be {bounds}; got {value}")
    return value


def check_estimator_settings(estimator_class, settings: dict, keys, caller: str) -> None:
    """Check ``settings[key]`` for each of ``keys`` against the scikit-learn ``_parameter_constraints`` of
    ``estimator_class`` (the one home of those rules), for settings that the shell passes on to it.

    :param caller: how the message names the settings, e.g. ``"`parameters`"``.
    :raises ValueError: scikit-learn's InvalidParameterError (a ValueError) naming the key and the rule.
    """
    validate_parameter_constraints({key: estimator_class._parameter_constraints[key] for key in keys},
                                   {key: settings[key] for key in keys}, caller_name=caller)


def check_n_atoms(value, name: str = "n_atoms") -> int:
    """The size N of a local Coulomb matrix as an int: a whole number >= 2 (the centre and a neighbour).

    The one home of this rule: the core functions, the descriptor and reconstruction settings of the
    calcfunctions and the analysis's input check all call it.
    """
    return check_integer(value, name, minimum=2)


def check_known_keys(settings, allowed, name: str) -> dict:
    """Return ``settings`` as a dict, raising a ValueError for a non-mapping or for keys not in ``allowed``.

    :param name: what the settings are, e.g. ``"reconstruction parameters"``; used in the message.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"{name} must be a mapping of names to values; got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {name} key(s) {unknown}; allowed: {sorted(allowed)}")
    return dict(settings)
