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
