"""Spectral moments of the Kβ″ and Kβ2 peaks (SCIENCE.md §3), the emulator's targets.

Per window W = [lo, hi] (eV, relative to the alignment reference):

    M0 = ∫_W I dE                          (intensity)
    M1 = ∫_W E I dE / M0                   (mean energy, eV)
    M2 = sqrt(∫_W (E-M1)² I dE / M0)       (standard deviation, eV)
    M3 = ∫_W (E-M1)³ I dE / (M0 M2³)       (skewness, dimensionless)

Integrals are trapezoids over the grid points inside the window.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .validation import as_finite_array

#: A window whose M0 is below this fraction of the whole spectrum's area counts as empty: its
#: higher moments would only describe the far tails of the other peak.
EMPTY_FRACTION = 1e-6
#: Default windows (eV relative to E_ref): Kβ″ (``kbpp``) and Kβ2 (``kb2``).
DEFAULT_WINDOWS = {"kbpp": (-24.0, -13.0), "kb2": (-12.0, 2.0)}


def _windows(windows) -> dict[str, tuple[float, float]]:
    """Normalize ``windows`` (mapping name -> (lo, hi), or a sequence of pairs) to an ordered dict."""
    if isinstance(windows, Mapping):
        items = list(windows.items())
    else:
        try:
            items = [(f"w{index}", pair) for index, pair in enumerate(windows)]
        except TypeError as exc:
            raise ValueError(f"`windows` must be a mapping name -> (lo, hi) or a sequence of pairs; got {windows!r}") from exc
    if not items:
        raise ValueError("`windows` is empty; give at least one (lo, hi) pair in eV")
    result = {}
    for name, pair in items:
        try:
            lo, hi = (float(value) for value in pair)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"window `{name}` must be a (lo, hi) pair of numbers in eV; got {pair!r}") from exc
        if not lo < hi:
            raise ValueError(f"window `{name}` = ({lo}, {hi}) eV needs lo < hi")
        result[str(name)] = (lo, hi)
    return result


def check_windows(windows, name: str = "windows") -> dict[str, tuple[float, float]]:
    """``windows`` (a mapping name -> (lo, hi) eV, or a sequence of pairs) as an ordered dict of float pairs.

    :param name: how the message names the argument (e.g. ``"moment_parameters.windows"``).
    :raises ValueError: naming ``name``: not a mapping or sequence of pairs, empty, a pair that is not
        two finite numbers, or lo >= hi.
    """
    if isinstance(windows, (str, bytes)):
        raise ValueError(f"`{name}` must be a mapping name -> (lo, hi) in eV; got the string {windows!r}")
    try:
        result = _windows(windows)
    except ValueError as exc:
        message = str(exc).replace("`windows`", f"`{name}`")
        raise ValueError(message if message.startswith(f"`{name}`") else f"`{name}`: {message}") from None
    bad = [key for key, (lo, hi) in result.items() if not (np.isfinite(lo) and np.isfinite(hi))]
    if bad:
        raise ValueError(f"`{name}`: window(s) {bad} must have finite bounds in eV")
    return result


def moment_names(windows=DEFAULT_WINDOWS) -> list[str]:
    """Names of the moments in column order, e.g. ``kbpp_m0 … kbpp_m3, kb2_m0 … kb2_m3``."""
    return [f"{name}_m{order}" for name in _windows(windows) for order in range(4)]


MOMENT_NAMES = moment_names(DEFAULT_WINDOWS)


def spectral_moments(energy, intensity, windows=DEFAULT_WINDOWS) -> np.ndarray:
    """Moments M0..M3 of each spectrum in each window.

    :param energy: (n_E,) strictly increasing energies in eV.
    :param intensity: (n_E,) one spectrum or (n_spectra, n_E) a stack, in states/eV.
    :param windows: mapping name -> (lo, hi) in eV, or a sequence of (lo, hi) pairs; default
        :data:`DEFAULT_WINDOWS` (Kβ″ [-24, -13], Kβ2 [-12, 2]).
    :returns: (n_spectra, 4 * n_windows): [W1 M0..M3, W2 M0..M3, ...]; M0 in states, M1 and M2 in
        eV, M3 dimensionless.
    :raises ValueError: bad shapes, non-increasing energies, a window outside the energy range or
        with fewer than two grid points, or a window without intensity (M0 <= 0) in some spectrum
        (M0 below :data:`EMPTY_FRACTION` of the spectrum's area; the message names the window and
        the spectra).
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    intensity = as_finite_array(intensity, "intensity", ndim=(1, 2))
    if intensity.ndim == 1:
        intensity = intensity[None, :]
    if intensity.shape[1] != energy.shape[0]:
        raise ValueError(f"`intensity` has {intensity.shape[1]} energy points but `energy` has {energy.shape[0]}")
    if np.any(np.diff(energy) <= 0):
        raise ValueError("`energy` must be strictly increasing")
    total = np.trapezoid(np.abs(intensity), energy, axis=1)
    columns = []
    for name, (lo, hi) in _windows(windows).items():
        if lo < energy[0] - 1e-9 or hi > energy[-1] + 1e-9:
            raise ValueError(f"window `{name}` = ({lo}, {hi}) eV lies outside the energy range "
                             f"({energy[0]}, {energy[-1]}) eV")
        inside = (energy >= lo - 1e-9) & (energy <= hi + 1e-9)
        if inside.sum() < 2:
            raise ValueError(f"window `{name}` = ({lo}, {hi}) eV holds fewer than two grid points")
        e, spectra = energy[inside], intensity[:, inside]
        m0 = np.trapezoid(spectra, e, axis=1)
        empty = np.flatnonzero(m0 <= EMPTY_FRACTION * np.maximum(total, np.finfo(float).tiny))
        if len(empty):
            shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
            raise ValueError(f"window `{name}` = ({lo}, {hi}) eV has no intensity (M0 below {EMPTY_FRACTION:g} of the "
                             f"spectrum's area) in spectra {shown}; "
                             "check the alignment and the window bounds")
        m1 = np.trapezoid(spectra * e, e, axis=1) / m0
        deviation = e[None, :] - m1[:, None]
        m2 = np.sqrt(np.trapezoid(spectra * deviation**2, e, axis=1) / m0)
        with np.errstate(divide="ignore", invalid="ignore"):
            m3 = np.where(m2 > 0, np.trapezoid(spectra * deviation**3, e, axis=1) / (m0 * m2**3), 0.0)
        columns.append(np.column_stack([m0, m1, m2, m3]))
    return np.hstack(columns)


def windows_from_mean_spectrum(energy, mean_intensity, windows=DEFAULT_WINDOWS) -> dict[str, tuple[float, float]]:
    """Split the two default windows at the minimum between the Kβ″ and Kβ2 peaks of a mean spectrum.

    The Kβ″ peak is the maximum of ``mean_intensity`` inside the first window, the Kβ2 peak the
    maximum inside the second; the split is the lowest point between them. The outer bounds of
    ``windows`` are kept. Returns a new dict with the same two names.
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    mean_intensity = as_finite_array(mean_intensity, "mean_intensity", ndim=1)
    if mean_intensity.shape != energy.shape:
        raise ValueError(f"`mean_intensity` has shape {mean_intensity.shape}; expected {energy.shape}")
    named = _windows(windows)
    if len(named) != 2:
        raise ValueError(f"`windows` must hold exactly two windows (Kβ″, Kβ2); got {len(named)}")
    (first, (lo1, hi1)), (second, (lo2, hi2)) = named.items()
    in1 = np.flatnonzero((energy >= lo1) & (energy <= hi1))
    in2 = np.flatnonzero((energy >= lo2) & (energy <= hi2))
    if len(in1) == 0 or len(in2) == 0:
        raise ValueError("`windows` lie outside the energy range of `energy`")
    peak1 = in1[np.argmax(mean_intensity[in1])]
    peak2 = in2[np.argmax(mean_intensity[in2])]
    if peak2 <= peak1 + 1:
        raise ValueError("the Kβ″ and Kβ2 peaks of `mean_intensity` are not separated; keep the default windows")
    split = peak1 + int(np.argmin(mean_intensity[peak1:peak2 + 1]))
    return {first: (lo1, float(energy[split])), second: (float(energy[split]), hi2)}


def moments_intensity_jacobian(energy, intensity, windows=DEFAULT_WINDOWS) -> np.ndarray:
    """d moments / d intensity of one spectrum: how each moment responds to the intensity at each point.

    With the trapezoid weights w_j of the points inside a window (the integrals of
    :func:`spectral_moments`), δ_j = E_j − M1 and V = M2²::

        dM0/dI_j = w_j
        dM1/dI_j = w_j δ_j / M0
        dM2/dI_j = w_j (δ_j² − V) / (2 M0 M2)
        dM3/dI_j = w_j (δ_j³ − 3 V δ_j) / (M0 M2³) − M3 (w_j / M0 + 3 dM2/dI_j / M2)

    For independent noise of standard deviation σ on every point the moments' covariance is
    σ² J Jᵀ (see :func:`aiida_xesml.ml.measured.measured_targets`).

    :param energy: (n_E,) strictly increasing, eV.
    :param intensity: (n_E,) one spectrum.
    :returns: (4 × n_windows, n_E) in the units of each moment per intensity unit.
    :raises ValueError: as :func:`spectral_moments`.
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    intensity = as_finite_array(intensity, "intensity", ndim=1)
    moments = spectral_moments(energy, intensity, windows)[0]
    rows = []
    for index, (lo, hi) in enumerate(_windows(windows).values()):
        m0, m1, m2, m3 = moments[4 * index:4 * index + 4]
        inside = np.flatnonzero((energy >= lo - 1e-9) & (energy <= hi + 1e-9))
        e = energy[inside]
        weights = np.zeros_like(energy)
        steps = np.diff(e)
        weights[inside[:-1]] += 0.5 * steps
        weights[inside[1:]] += 0.5 * steps
        delta = energy - m1
        variance = m2**2
        d0 = weights
        d1 = weights * delta / m0
        d2 = weights * (delta**2 - variance) / (2 * m0 * m2) if m2 > 0 else np.zeros_like(energy)
        d3 = (weights * (delta**3 - 3 * variance * delta) / (m0 * m2**3) - m3 * (weights / m0 + 3 * d2 / m2)
              if m2 > 0 else np.zeros_like(energy))
        rows.extend([d0, d1, d2, d3])
    return np.vstack(rows)


# ----- targets a rigid shift of the energy axis and a scaling of the intensity cannot change -----

#: The target sets the emulator, ECA and inverse can work with: ``"moments"``, the 8 windowed
#: moments as they are (they need the calculations' energy reference and intensity unit), and
#: ``"shift_free"``, the functions of them that a measured spectrum on its own absolute energy axis,
#: in arbitrary intensity units, also gives (:func:`shift_free_targets`).
TARGET_SETS = ("moments", "shift_free")


def _two_windows(windows) -> tuple[str, str]:
    names = list(_windows(windows))
    if len(names) != 2:
        raise ValueError(f"`windows` must hold exactly two windows (Kβ″ first, Kβ2 second) for the shift-free "
                         f"targets; got {len(names)}: {names}")
    return names[0], names[1]


def shift_free_names(windows=DEFAULT_WINDOWS) -> list[str]:
    """Names of the shift-free targets in column order (:func:`shift_free_targets`).

    With the default windows: ``kbpp_minus_kb2_m1`` (eV), ``kbpp_over_kb2_m0`` (ratio),
    ``kbpp_m2`` (eV), ``kbpp_m3``, ``kb2_m2`` (eV), ``kb2_m3``.
    """
    first, second = _two_windows(windows)
    return [f"{first}_minus_{second}_m1", f"{first}_over_{second}_m0",
            f"{first}_m2", f"{first}_m3", f"{second}_m2", f"{second}_m3"]


SHIFT_FREE_NAMES = shift_free_names(DEFAULT_WINDOWS)


def _check_moment_rows(moments, name: str = "moments") -> np.ndarray:
    moments = as_finite_array(moments, name, ndim=(1, 2))
    moments = np.atleast_2d(moments)
    if moments.shape[1] != 8:
        raise ValueError(f"`{name}` must have the 8 moments [Kβ″ M0..M3, Kβ2 M0..M3] per row; "
                         f"got {moments.shape[1]} columns")
    bad = np.flatnonzero(moments[:, 4] <= 0)
    if len(bad):
        raise ValueError(f"`{name}`: the Kβ2 intensity M0 (column 4) must be > 0 for the intensity ratio; rows "
                         f"{bad[:10].tolist()} have M0 <= 0 (an empty window: check the alignment and windows)")
    return moments


def shift_free_targets(moments) -> np.ndarray:
    """Targets that a rigid shift of the energy axis and a scaling of the intensity leave unchanged.

    From the 8 windowed moments [Kβ″ M0..M3, Kβ2 M0..M3] (:func:`spectral_moments`) of each row:

    0. ``M1(Kβ″) − M1(Kβ2)``: the mean-energy difference of the two peaks, eV;
    1. ``M0(Kβ″) / M0(Kβ2)``: their intensity ratio, dimensionless;
    2. ``M2(Kβ″)``, 3. ``M3(Kβ″)``, 4. ``M2(Kβ2)``, 5. ``M3(Kβ2)``: the widths (eV) and skewnesses.

    Names: :func:`shift_free_names` (:data:`SHIFT_FREE_NAMES` for the default windows). The
    invariance holds when the windows move with the spectrum (see
    :func:`aiida_xesml.ml.measured.measured_windows`): intensities in arbitrary units enter only as
    the ratio, and the absolute energy only as a difference.

    :param moments: (8,) or (n, 8).
    :returns: (n, 6).
    :raises ValueError: not 8 columns, NaN or inf, or a Kβ2 M0 <= 0.
    """
    m = _check_moment_rows(moments)
    return np.column_stack([m[:, 1] - m[:, 5], m[:, 0] / m[:, 4], m[:, 2], m[:, 3], m[:, 6], m[:, 7]])


def shift_free_jacobian(moments) -> np.ndarray:
    """Analytic Jacobian of :func:`shift_free_targets` with respect to the 8 moments.

    :param moments: (8,) or (n, 8) [Kβ″ M0..M3, Kβ2 M0..M3].
    :returns: (n, 6, 8): ``J[i, t, j] = d target_t / d moment_j`` of row i.
    """
    m = _check_moment_rows(moments)
    jacobian = np.zeros((len(m), 6, 8))
    jacobian[:, 0, 1], jacobian[:, 0, 5] = 1.0, -1.0
    jacobian[:, 1, 0] = 1.0 / m[:, 4]
    jacobian[:, 1, 4] = -m[:, 0] / m[:, 4] ** 2
    for target, column in ((2, 2), (3, 3), (4, 6), (5, 7)):
        jacobian[:, target, column] = 1.0
    return jacobian


def check_target_set(target_set: str, name: str = "target_set") -> str:
    """``target_set`` if it is one of :data:`TARGET_SETS`; a ValueError naming ``name`` otherwise."""
    if target_set not in TARGET_SETS:
        raise ValueError(f"`{name}` must be one of {', '.join(TARGET_SETS)}; got {target_set!r}")
    return target_set


def target_names(target_set: str = "moments", windows=DEFAULT_WINDOWS) -> list[str]:
    """Column names of ``target_set`` (:data:`TARGET_SETS`) for ``windows``."""
    if check_target_set(target_set) == "moments":
        return moment_names(windows)
    return shift_free_names(windows)


def targets_from_moments(moments, target_set: str = "moments") -> np.ndarray:
    """The targets of ``target_set`` from the 8 windowed moments per row: the moments themselves
    (as a 2-D float array) or :func:`shift_free_targets`."""
    if check_target_set(target_set) == "moments":
        return np.atleast_2d(as_finite_array(moments, "moments", ndim=(1, 2)))
    return shift_free_targets(moments)


def targets_jacobian(moments, target_set: str = "moments") -> np.ndarray:
    """d targets / d moments (n, n_targets, 8) of ``target_set``: the identity for ``"moments"``,
    :func:`shift_free_jacobian` for ``"shift_free"``."""
    if check_target_set(target_set) == "moments":
        m = np.atleast_2d(as_finite_array(moments, "moments", ndim=(1, 2)))
        return np.broadcast_to(np.eye(m.shape[1]), (len(m), m.shape[1], m.shape[1])).copy()
    return shift_free_jacobian(moments)


def shift_free_transform(moments) -> tuple[np.ndarray, np.ndarray]:
    """``(shift_free_targets(moments), shift_free_jacobian(moments))``: the ``transform`` callable of
    :class:`aiida_xesml.ml.mixture.PopulationInverse` (moments (n, 8) → targets (n, 6) and
    d targets / d moments (n, 6, 8)) for a measured spectrum on its own energy axis."""
    return shift_free_targets(moments), shift_free_jacobian(moments)
