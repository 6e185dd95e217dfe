"""A measured Kβ spectrum: parsing a two-column text file, finding its peaks and windows on its own
energy axis, and putting it on the common energy grid.

Plain functions, no AiiDA: :func:`read_spectrum_file` checks a file's size (the limit lives in
:mod:`aiida_xesml.ml.limits`) and encoding and parses it with :func:`read_two_column`, and
:func:`shift_and_interpolate` shifts by the energy reference and interpolates. The calcfunction
:func:`aiida_xesml.calculations.measured_spectrum.measured_spectrum` records the step in the
provenance graph.

A measured spectrum sits on an absolute emission-energy axis (about 11.1 keV for Ge Kβ), where the
calculations' reference (the valence-band maximum or a core level) cannot be observed, and its
intensity is in arbitrary units. :func:`measured_targets` needs neither: it finds the Kβ2 band and
the Kβ″ peak on both the measured and the calculated mean spectrum (:func:`find_kbeta_peaks`), puts
each moment window at the same distance from its own peak as in the calculations
(:func:`measured_windows`), and returns the shift-free targets
(:func:`aiida_xesml.ml.moments.shift_free_targets`) and where the windows were put.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from scipy.signal import find_peaks

from .limits import MAX_SPECTRUM_FILE_BYTES, check_file, check_size
from .moments import (
    DEFAULT_WINDOWS,
    check_windows,
    moments_intensity_jacobian,
    shift_free_jacobian,
    shift_free_names,
    shift_free_targets,
    spectral_moments,
)
from .spectra import FWHM_TO_SIGMA, energy_grid
from .validation import as_finite_array, check_positive

#: Largest spectrum file accepted (bytes): a measured spectrum has thousands of points, not millions.
#: The same number as :data:`aiida_xesml.ml.limits.MAX_SPECTRUM_FILE_BYTES`.
MAX_FILE_BYTES = MAX_SPECTRUM_FILE_BYTES
#: Fewest points a spectrum must have.
MIN_POINTS = 10
#: Default common grid [start, stop, step] in eV, as the calculated spectra.
DEFAULT_GRID = (-30.0, 5.0, 0.05)

_SEPARATORS = re.compile(r"[\s,;]+")


def check_file_size(size: int, limit: int = MAX_FILE_BYTES) -> None:
    """Raise a ValueError when a file of ``size`` bytes is empty or larger than ``limit``."""
    if limit == MAX_SPECTRUM_FILE_BYTES:
        check_size(size, "spectrum")
        return
    if size > limit:
        raise ValueError(f"the file has {size} bytes, more than the limit of {limit} bytes "
                         f"({limit / 1024 / 1024:g} MB) for a measured spectrum")
    if size == 0:
        raise ValueError("the file is empty; it needs two columns: energy (eV) and intensity")


def read_spectrum_file(path, argument: str | None = None) -> tuple[np.ndarray, np.ndarray, bytes]:
    """Energies (eV), intensities and the raw bytes of a two-column spectrum file.

    The size is checked before the file is read (:func:`aiida_xesml.ml.limits.check_file`), then the
    bytes are decoded as UTF-8 (a UTF-8 byte-order mark is allowed) and parsed with
    :func:`read_two_column`.

    :param path: the file.
    :param argument: how error messages name the file (e.g. ``"SPECTRUM"``); the path is always given.
    :raises ValueError: a missing, non-regular, empty or too large file, one that is not UTF-8 text,
        or any problem :func:`read_two_column` finds; the message starts with the path.
    """
    path = Path(path)
    check_file(path, "spectrum", argument)
    content = path.read_bytes()
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: the file is not UTF-8 text (byte {exc.start} is {content[exc.start:exc.start + 1]!r}); "
                         "it must be two columns of numbers, saved as plain text") from None
    try:
        energy, intensity = read_two_column(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return energy, intensity, content


def sha256_hex(content: bytes) -> str:
    """The SHA-256 of ``content`` as a hex string."""
    return hashlib.sha256(content).hexdigest()


def read_two_column(text: str, min_points: int = MIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Energies (eV) and intensities of a two-column text spectrum.

    Columns are separated by whitespace, commas or semicolons. Lines starting with ``#`` are
    comments and are allowed only before the first data line; blank lines are ignored.

    :raises ValueError: with the line number for a comment, header or non-numeric line after the
        data starts, a line without exactly two columns, a NaN or inf value; and for fewer than
        ``min_points`` points or an energy axis that is not strictly increasing.
    """
    energy, intensity = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if energy:
                raise ValueError(f"line {number}: a comment/header line ({line[:40]!r}) after the data started; "
                                 "'#' lines are allowed only at the top of the file")
            continue
        cells = [cell for cell in _SEPARATORS.split(line) if cell]
        try:
            values = [float(cell) for cell in cells]
        except ValueError:
            where = "in the middle of the data" if energy else "before the data"
            raise ValueError(f"line {number}: non-numeric line {where} ({line[:40]!r}); mark header lines "
                             "with '#' at the top of the file") from None
        if len(values) != 2:
            raise ValueError(f"line {number}: {len(values)} column(s); expected 2 (energy in eV, intensity)")
        if not all(np.isfinite(values)):
            raise ValueError(f"line {number}: NaN or inf value ({line[:40]!r}); every value must be a finite number")
        energy.append(values[0])
        intensity.append(values[1])
    if len(energy) < min_points:
        raise ValueError(f"the spectrum has {len(energy)} data point(s); at least {min_points} are needed")
    energy, intensity = np.array(energy), np.array(intensity)
    steps = np.diff(energy)
    if np.any(steps <= 0):
        first = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(f"the energy axis is not strictly increasing: point {first + 2} ({energy[first + 1]:g} eV) "
                         f"follows {energy[first]:g} eV; sort the file by energy and remove duplicates")
    return energy, intensity


def shift_and_interpolate(energy, intensity, reference_ev: float, grid) -> np.ndarray:
    """``intensity`` at the energies ``grid`` (eV relative to the reference), zero outside the measured range.

    :param energy: (n,) strictly increasing absolute energies (eV) of the measurement.
    :param reference_ev: absolute energy (eV) on the measurement's axis of the calculations' reference
        (the valence-band maximum); the measured energies are shifted by ``-reference_ev``.
    :param grid: (n_E,) energies (eV) relative to the reference.
    :raises ValueError: a non-finite reference; ``energy`` and ``intensity`` not finite 1-D arrays of
        one length, or ``energy`` not strictly increasing; a bad ``grid``; or a measurement that does
        not overlap the grid.
    """
    try:
        reference_ev = float(reference_ev)
    except (TypeError, ValueError):
        raise ValueError(f"`reference_ev` must be a finite number of eV; got {reference_ev!r}") from None
    if not np.isfinite(reference_ev):
        raise ValueError(f"`reference_ev` must be a finite number of eV; got {reference_ev!r}")
    energy = as_finite_array(energy, "energy", ndim=1)
    intensity = as_finite_array(intensity, "intensity", ndim=1)
    if intensity.shape != energy.shape:
        raise ValueError(f"`intensity` has {len(intensity)} points but `energy` has {len(energy)}; one per energy")
    if np.any(np.diff(energy) <= 0):
        first = int(np.flatnonzero(np.diff(energy) <= 0)[0])
        raise ValueError(f"`energy` is not strictly increasing: point {first + 1} ({energy[first + 1]:g} eV) follows "
                         f"{energy[first]:g} eV; sort the spectrum by energy and remove duplicates")
    grid = as_finite_array(grid, "grid", ndim=1)
    shifted = energy - reference_ev
    if shifted[-1] < grid[0] or shifted[0] > grid[-1]:
        raise ValueError(f"the measured range [{shifted[0]:g}, {shifted[-1]:g}] eV relative to the reference "
                         f"({reference_ev:g} eV) does not overlap the grid [{grid[0]:g}, {grid[-1]:g}] eV; "
                         "check --reference-ev")
    return np.interp(grid, shifted, intensity, left=0.0, right=0.0)


def grid_from(values) -> np.ndarray:
    """The energy grid of ``[start, stop, step]`` (eV)."""
    values = list(values)
    if len(values) != 3:
        raise ValueError(f"the grid must be [start, stop, step] in eV; got {values!r}")
    return energy_grid(*values)


# ----- peaks and windows on a spectrum's own energy axis -------------------------------------------

#: Gaussian smoothing (FWHM, eV) applied before the peaks are located; it removes counting noise and
#: merges the sub-bands of Kβ2, and is about the spectrometer resolution of VtC XES.
PEAK_SMOOTHING_FWHM = 1.0
#: Where the Kβ″ peak is looked for: eV below the Kβ2 anchor (the calculated GeO2 spectra have it
#: 12–15 eV below; the O 2s–O 2p separation of oxides is 10–17 eV).
KBPP_SEARCH_BELOW_KB2 = (8.0, 20.0)
#: Least prominence of the Kβ″ peak (after smoothing), as a fraction of the Kβ2 maximum.
MIN_KBPP_PROMINENCE = 0.02
#: How the Kβ2 band is anchored: ``"half_maximum_center"`` (default), the middle of the energy
#: range where the smoothed band is above half its maximum, which does not jump between the
#: band's sub-peaks when their heights change; or ``"maximum"``, the smoothed maximum itself.
KB2_ANCHORS = ("half_maximum_center", "maximum")


def _uniform(energy, intensity, step):
    count = int(np.floor((energy[-1] - energy[0]) / step)) + 1
    grid = energy[0] + step * np.arange(count)
    return grid, np.interp(grid, energy, intensity)


def _smooth(values, step, fwhm):
    """Gaussian smoothing on a uniform grid, normalized at the ends (no artificial drop there)."""
    sigma = fwhm * FWHM_TO_SIGMA / step
    half = int(np.ceil(4 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    weights = np.convolve(np.ones_like(values), kernel, mode="same")
    return np.convolve(values, kernel, mode="same") / weights


def _parabola_vertex(grid, values, index):
    """Sub-grid position of the maximum at ``index`` from a parabola through three points."""
    if index <= 0 or index >= len(values) - 1:
        return float(grid[index])
    y0, y1, y2 = values[index - 1:index + 2]
    curvature = y0 - 2 * y1 + y2
    offset = 0.5 * (y0 - y2) / curvature if curvature < 0 else 0.0
    return float(grid[index] + offset * (grid[1] - grid[0]))


def _crossing(grid, values, start, level, direction):
    """Energy where ``values`` falls below ``level`` walking from ``start`` in ``direction`` (+1/-1),
    linearly interpolated; None when it never does inside the grid."""
    index = start
    while 0 <= index + direction < len(values):
        nxt = index + direction
        if values[nxt] < level:
            fraction = (values[index] - level) / (values[index] - values[nxt])
            return float(grid[index] + fraction * (grid[nxt] - grid[index]))
        index = nxt
    return None


def find_kbeta_peaks(energy, intensity, smoothing_fwhm: float = PEAK_SMOOTHING_FWHM,
                     search_below_kb2=KBPP_SEARCH_BELOW_KB2, min_prominence: float = MIN_KBPP_PROMINENCE,
                     kb2_anchor: str = "half_maximum_center") -> dict:
    """The Kβ2 band and the Kβ″ peak of one spectrum, on its own energy axis.

    The spectrum is resampled on a uniform grid (its median step, at most a tenth of
    ``smoothing_fwhm``) and smoothed with a Gaussian of FWHM ``smoothing_fwhm`` (eV). The Kβ2 band
    is the highest local maximum; its anchor is set by ``kb2_anchor`` (:data:`KB2_ANCHORS`). The
    Kβ″ peak is the most prominent local maximum between ``search_below_kb2`` = (near, far) eV
    below that maximum, with a prominence of at least ``min_prominence`` times the Kβ2 maximum;
    its position is refined by a parabola through the three highest points. Nothing here depends
    on the intensity unit or on where the energy axis starts.

    :param energy: (n,) strictly increasing energies, eV (any origin, e.g. absolute emission energies).
    :param intensity: (n,) intensities in any unit (background subtracted).
    :returns: dict with ``kb2_ev`` (the anchor), ``kb2_max_ev`` (the smoothed maximum), ``kbpp_ev``,
        ``kbpp_prominence`` (fraction of the Kβ2 maximum), ``kb2_anchor`` and ``smoothing_fwhm_ev``.
    :raises ValueError: bad arrays; an unknown ``kb2_anchor``; a spectrum with no local maximum
        (no Kβ2 band); or no Kβ″ peak in the search range (the message gives the range searched
        and what to check).
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    intensity = as_finite_array(intensity, "intensity", ndim=1)
    if intensity.shape != energy.shape:
        raise ValueError(f"`intensity` has {len(intensity)} points but `energy` has {len(energy)}; one per energy")
    if len(energy) < MIN_POINTS or np.any(np.diff(energy) <= 0):
        raise ValueError(f"`energy` must be strictly increasing with at least {MIN_POINTS} points")
    fwhm = check_positive(smoothing_fwhm, "smoothing_fwhm")
    try:
        near, far = (float(value) for value in search_below_kb2)
    except (TypeError, ValueError):
        raise ValueError(f"`search_below_kb2` must be (near, far) in eV; got {search_below_kb2!r}") from None
    if not 0 <= near < far:
        raise ValueError(f"`search_below_kb2` = ({near}, {far}) eV needs 0 <= near < far")
    if kb2_anchor not in KB2_ANCHORS:
        raise ValueError(f"`kb2_anchor` must be one of {', '.join(KB2_ANCHORS)}; got {kb2_anchor!r}")
    step = min(float(np.median(np.diff(energy))), fwhm / 10.0)
    grid, values = _uniform(energy, intensity, step)
    smooth = _smooth(values, step, fwhm)

    maxima, _ = find_peaks(smooth)
    if len(maxima) == 0 or smooth[maxima].max() <= 0:
        raise ValueError("the spectrum has no peak (no local maximum of positive intensity after smoothing with "
                         f"{fwhm} eV FWHM); it must show the Kβ2 band and the Kβ″ peak")
    top = maxima[np.argmax(smooth[maxima])]
    height = smooth[top]
    kb2_max = _parabola_vertex(grid, smooth, top)
    kb2 = kb2_max
    if kb2_anchor == "half_maximum_center":
        low = _crossing(grid, smooth, top, 0.5 * height, -1)
        high = _crossing(grid, smooth, top, 0.5 * height, +1)
        if low is None or high is None:
            raise ValueError(f"the Kβ2 band at {kb2_max:.2f} eV does not fall to half its maximum on both sides inside "
                             f"the measured range [{energy[0]:g}, {energy[-1]:g}] eV; measure a wider range or use "
                             "kb2_anchor='maximum'")
        kb2 = 0.5 * (low + high)

    candidates, properties = find_peaks(smooth, prominence=min_prominence * height)
    inside = (grid[candidates] <= kb2_max - near) & (grid[candidates] >= kb2_max - far) & (smooth[candidates] > 0)
    if not inside.any():
        raise ValueError(
            f"no Kβ″ peak found {near:g}–{far:g} eV below the Kβ2 maximum at {kb2_max:.2f} eV (a local maximum with a "
            f"prominence of at least {min_prominence:g} of the Kβ2 height, after {fwhm:g} eV smoothing): the spectrum "
            "must show both peaks. Check that the range covers the Kβ″ region, that the Kβ1,3 background is "
            "subtracted, or change `search_below_kb2` / `min_prominence`")
    prominence = properties["prominences"][inside]
    kbpp_index = candidates[inside][np.argmax(prominence)]
    return {"kb2_ev": float(kb2), "kb2_max_ev": float(kb2_max), "kbpp_ev": _parabola_vertex(grid, smooth, kbpp_index),
            "kbpp_prominence": float(prominence.max() / height), "kb2_anchor": kb2_anchor,
            "smoothing_fwhm_ev": fwhm}


def measured_windows(measured_peaks: dict, calculated_peaks: dict, windows=DEFAULT_WINDOWS) -> dict:
    """The moment windows on the measured axis: each at the same distance from its own peak as on
    the calculated axis.

    The first window (Kβ″) follows the Kβ″ peak, the second (Kβ2) the Kβ2 anchor:
    ``lo_measured = lo + (peak_measured − peak_calculated)``, the same for ``hi``. A rigid shift of
    the measured axis moves both windows by that shift, so the shift-free targets do not change.
    When the measured peaks lie closer together than the calculated ones by more than the gap
    between the windows, the windows would overlap: both are then cut at the middle of the overlap.

    :param measured_peaks, calculated_peaks: dicts with ``kbpp_ev`` and ``kb2_ev``
        (:func:`find_kbeta_peaks`).
    :param windows: the calculations' two windows (Kβ″ first, Kβ2 second), eV on the calculated axis.
    :returns: dict with ``windows`` (name -> (lo, hi) eV on the measured axis), ``shifts_ev``
        (name -> measured minus calculated peak), ``overlap_cut_ev`` (None, or where the windows
        were cut).
    :raises ValueError: not two windows, or peaks without ``kbpp_ev`` / ``kb2_ev``.
    """
    named = check_windows(windows)
    if len(named) != 2:
        raise ValueError(f"`windows` must hold exactly two windows (Kβ″, Kβ2); got {list(named)}")
    try:
        shifts = [float(measured_peaks[key]) - float(calculated_peaks[key]) for key in ("kbpp_ev", "kb2_ev")]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("`measured_peaks` and `calculated_peaks` need numbers `kbpp_ev` and `kb2_ev` (eV), as "
                         f"find_kbeta_peaks returns them: {exc}") from None
    (first, (lo1, hi1)), (second, (lo2, hi2)) = named.items()
    placed = {first: [lo1 + shifts[0], hi1 + shifts[0]], second: [lo2 + shifts[1], hi2 + shifts[1]]}
    cut = None
    if placed[first][1] > placed[second][0]:
        cut = 0.5 * (placed[first][1] + placed[second][0])
        placed[first][1] = placed[second][0] = cut
    return {"windows": {name: (float(lo), float(hi)) for name, (lo, hi) in placed.items()},
            "shifts_ev": {first: shifts[0], second: shifts[1]}, "overlap_cut_ev": cut}


def noise_sigma(intensity) -> float:
    """Standard deviation of point-to-point noise, from the second differences of ``intensity``.

    For independent noise σ on every point, ``I[j-1] − 2 I[j] + I[j+1]`` has variance 6σ²; the
    smooth signal adds only its curvature times the step squared. The median absolute deviation
    (× 1.4826) makes the estimate robust to the few points where the signal curves sharply.

    :param intensity: (n,) at least 5 points, in the spectrum's own unit.
    :returns: σ in the unit of ``intensity``.
    """
    intensity = as_finite_array(intensity, "intensity", ndim=1)
    if len(intensity) < 5:
        raise ValueError(f"`intensity` has {len(intensity)} points; the noise estimate needs at least 5")
    second = intensity[:-2] - 2 * intensity[1:-1] + intensity[2:]
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6.0))


def measured_targets(energy, intensity, calculated_energy, calculated_intensity, windows=DEFAULT_WINDOWS,
                     noise=None, **peak_options) -> dict:
    """Shift-free targets of a measured spectrum on its own energy axis, with no reference energy.

    1. :func:`find_kbeta_peaks` on the calculated mean spectrum (on the calculations' axis, e.g.
       eV relative to the VBM) and on the measurement (e.g. absolute emission energies);
    2. :func:`measured_windows`: each window at the same distance from its own peak;
    3. the moments of the measurement in those windows (:func:`~aiida_xesml.ml.moments.spectral_moments`
       on its own points) and from them the shift-free targets
       (:func:`~aiida_xesml.ml.moments.shift_free_targets`). The measured intensity enters only as the
       Kβ″/Kβ2 ratio: its unit cancels.

    :param energy, intensity: the measurement (strictly increasing eV; any intensity unit, background
        subtracted).
    :param calculated_energy, calculated_intensity: the calculations' ensemble-mean spectrum on their
        own axis (the mean over the training sites' spectra, e.g. ``XesSpectraData.intensity.mean(axis=0)``).
    :param windows: the calculations' two moment windows (eV on the calculated axis).
    :param noise: standard deviation of the measurement's noise per point, in its intensity unit
        (e.g. from counting statistics); default :func:`noise_sigma` of the measurement.
    :param peak_options: passed to :func:`find_kbeta_peaks` for both spectra (``smoothing_fwhm``,
        ``search_below_kb2``, ``min_prominence``, ``kb2_anchor``).
    :returns: dict with ``targets`` (6,) and ``names`` (:func:`~aiida_xesml.ml.moments.shift_free_names`),
        ``windows`` (name -> (lo, hi) eV on the measured axis), ``peaks`` (measured) and
        ``calculated_peaks`` (dicts of :func:`find_kbeta_peaks`), ``shifts_ev`` (name -> measured
        minus calculated peak, eV), ``reference_ev`` (the energy on the measured axis of the
        calculations' zero, from the Kβ2 anchor; for display and :func:`shift_and_interpolate` only,
        the targets do not use it), ``mean_energies_ev`` (name -> M1 on the measured axis) and
        ``overlap_cut_ev``.
    :raises ValueError: from the steps above, with the measured range when a window does not fit in it.
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    calculated = find_kbeta_peaks(calculated_energy, calculated_intensity, **peak_options)
    try:
        peaks = find_kbeta_peaks(energy, intensity, **peak_options)
    except ValueError as exc:
        raise ValueError(f"measured spectrum: {exc}") from None
    placed = measured_windows(peaks, calculated, windows)
    lo = min(lo for lo, _ in placed["windows"].values())
    hi = max(hi for _, hi in placed["windows"].values())
    if lo < energy[0] or hi > energy[-1]:
        raise ValueError(f"the moment windows placed from the peaks need the measured range to cover [{lo:.2f}, "
                         f"{hi:.2f}] eV, but it is [{energy[0]:g}, {energy[-1]:g}] eV: measure (or keep) a wider range, "
                         f"or narrow the windows (Kβ″ found at {peaks['kbpp_ev']:.2f} eV, Kβ2 at {peaks['kb2_ev']:.2f} eV)")
    intensity = as_finite_array(intensity, "intensity", ndim=1)
    moments = spectral_moments(energy, intensity, windows=placed["windows"])
    names = list(placed["windows"])
    sigma = noise_sigma(intensity) if noise is None else float(noise)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"`noise` must be a standard deviation >= 0 in the intensity unit; got {noise!r}")
    jacobian = shift_free_jacobian(moments)[0] @ moments_intensity_jacobian(energy, intensity, placed["windows"])
    covariance = sigma**2 * jacobian @ jacobian.T
    return {
        "targets": shift_free_targets(moments)[0],
        "names": shift_free_names(placed["windows"]),
        "windows": placed["windows"],
        "peaks": peaks,
        "calculated_peaks": calculated,
        "shifts_ev": placed["shifts_ev"],
        "reference_ev": placed["shifts_ev"][names[1]],
        "mean_energies_ev": {names[0]: float(moments[0, 1]), names[1]: float(moments[0, 5])},
        "overlap_cut_ev": placed["overlap_cut_ev"],
        "noise_sigma": sigma,
        "target_errors": np.sqrt(np.diag(covariance)),
        "target_covariance": covariance,
    }
