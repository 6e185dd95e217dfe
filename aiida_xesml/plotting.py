"""Figures of the learning core: emulator parity, mean spectra, ECA covered variance, reconstruction,
learning curves.

Every function takes plain numpy arrays and a path, writes a PNG there (parent folders are created),
and returns the :class:`pathlib.Path` written. Figures are built on matplotlib's Agg canvas without
pyplot, so nothing is left open and no global backend is switched. Bad input raises a
``ValueError`` that names the argument.

Units: energies eV (relative to the alignment reference E_ref), distances Å, pressures GPa; moment
M0 in states, M1 and M2 in eV, M3 dimensionless.

This module never imports aiida.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .ml.moments import DEFAULT_WINDOWS, check_windows
from .ml.validation import as_finite_array

__all__ = [
    "DPI",
    "covered_variance_plot",
    "learning_curve_plot",
    "mean_spectra_plot",
    "moment_label",
    "parity_plot",
    "reconstruction_plot",
]

#: Resolution of the PNGs written.
DPI = 120
#: Display names of the spectral windows.
WINDOW_LABELS = {"kbpp": "Kβ″", "kb2": "Kβ2"}
#: Units of moment M<order>.
MOMENT_UNITS = {0: "states", 1: "eV", 2: "eV", 3: "dimensionless"}

_RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9.5,
    "figure.titlesize": 14,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_WINDOW_COLOURS = ["#fdd0a2", "#c6dbef", "#c7e9c0", "#dadaeb", "#fcbba1"]
_MOMENT_PATTERN = re.compile(r"^(?P<window>.+)_m(?P<order>\d+)$")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def moment_label(name: str) -> str:
    """Display name of a moment column: ``'kbpp_m0'`` -> ``'Kβ″ M0'``, ``'kb2_m1'`` -> ``'Kβ2 M1'``.

    Names whose window is not a known one (``kbpp``, ``kb2``) are returned unchanged.
    """
    name = str(name)
    match = _MOMENT_PATTERN.match(name)
    if match is None or match["window"] not in WINDOW_LABELS:
        return name
    return f"{WINDOW_LABELS[match['window']]} M{int(match['order'])}"


def _moment_unit(name: str) -> str | None:
    """Unit of a moment column from its ``_m<order>`` suffix; None when the order is not 0..3."""
    match = _MOMENT_PATTERN.match(str(name))
    return None if match is None else MOMENT_UNITS.get(int(match["order"]))


def _window_label(name: str) -> str:
    return WINDOW_LABELS.get(str(name), str(name))


def _num(value: float) -> str:
    """``value`` with a typographic minus sign."""
    return f"{value:g}".replace("-", "\u2212")


def _gpa(value: float) -> str:
    return f"{_num(value)} GPa"


def _label_array(labels, name: str, n: int) -> np.ndarray:
    """``labels`` as a finite 1-D float array of length ``n`` (pressures, GPa)."""
    array = as_finite_array(labels, name, ndim=1)
    if array.shape[0] != n:
        raise ValueError(f"`{name}` has {array.shape[0]} entries but {n} are needed (one per row)")
    return array


def _colours(values: np.ndarray) -> list:
    """One colour per value (distinct, sorted pressures) from a truncated viridis (no pale yellow)."""
    cmap = colormaps["viridis"]
    if len(values) == 1:
        return [cmap(0.35)]
    return [cmap(0.85 * i / (len(values) - 1)) for i in range(len(values))]


def _output_path(path) -> Path:
    if path is None or str(path) == "":
        raise ValueError("`path` must be a file path for the PNG; got an empty value")
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"`path` {str(path)!r} is a directory; give a file name such as 'figure.png'")
    return path


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, format="png", facecolor="white")
    fig.clear()  # the figure is not registered with pyplot: clearing it frees everything
    return path


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained", facecolor="white")
    fig.get_layout_engine().set(w_pad=0.06, h_pad=0.06, hspace=0.07, wspace=0.04)
    return fig


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def parity_plot(known, predicted, names, labels, path) -> Path:
    """Parity plot of the emulator: predicted against known spectral moments, one panel per moment.

    :param known: (n, m) known (computed) moments; M0 in states, M1 and M2 in eV, M3 dimensionless.
    :param predicted: (n, m) emulator predictions of the same moments, same rows and columns.
    :param names: (m,) column names such as ``'kbpp_m0'`` … ``'kb2_m3'`` (see :func:`moment_label`).
    :param labels: (n,) pressure of each row in GPa; points are coloured by it, and a large cross
        marks the per-pressure mean of (known, predicted).
    :param path: where to write the PNG.
    :returns: the path written.
    :raises ValueError: on empty, non-finite or mismatched input (the message names the argument).
    """
    known = as_finite_array(known, "known", ndim=2)
    predicted = as_finite_array(predicted, "predicted", ndim=2)
    if predicted.shape != known.shape:
        raise ValueError(f"`predicted` has shape {predicted.shape} but `known` has {known.shape}; they must match")
    n, m = known.shape
    if isinstance(names, str):
        raise ValueError("`names` must be a sequence of column names, not a single string")  # noqa: TRY004
    names = [str(name) for name in np.asarray(names, dtype=object).ravel()]
    if len(names) != m:
        raise ValueError(f"`names` has {len(names)} entries but `known` has {m} columns")
    labels = _label_array(labels, "labels", n)
    path = _output_path(path)

    distinct = np.unique(labels)
    colours = _colours(distinct)
    cmap = ListedColormap(colours)
    if len(distinct) > 1:
        mids = (distinct[1:] + distinct[:-1]) / 2
        bounds = np.concatenate([[distinct[0] - (mids[0] - distinct[0])], mids,
                                 [distinct[-1] + (distinct[-1] - mids[-1])]])
    else:
        bounds = np.array([distinct[0] - 0.5, distinct[0] + 0.5])
    norm = BoundaryNorm(bounds, cmap.N)

    ncols = min(4, m)
    nrows = math.ceil(m / ncols)
    with matplotlib.rc_context(_RC):
        fig = _figure(max(3.3 * ncols + 1.0, 5.2), 3.15 * nrows + 0.6)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        order = np.argsort(labels, kind="stable")
        point_size = float(np.clip(900.0 / max(n, 1) ** 0.8, 6, 30))
        scatter = None
        for j, ax in enumerate(axes):
            if j >= m:
                ax.set_visible(False)
                continue
            x, y = known[:, j], predicted[:, j]
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            pad = 0.06 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
            lims = (lo - pad, hi + pad)
            ax.plot(lims, lims, ls="--", lw=1.1, color="0.45", zorder=1)
            scatter = ax.scatter(x[order], y[order], c=labels[order], cmap=cmap, norm=norm, s=point_size,
                                 alpha=0.55, linewidths=0, zorder=2, rasterized=False)
            for value, colour in zip(distinct, colours):
                rows = labels == value
                ax.scatter([x[rows].mean()], [y[rows].mean()], marker="X", s=170, color=colour,
                           edgecolors="black", linewidths=1.3, zorder=4)
            ax.set_xlim(lims)
            ax.set_ylim(lims)
            ax.set_aspect("equal", adjustable="box")
            ax.locator_params(axis="both", nbins=4)
            unit = _moment_unit(names[j])
            suffix = f" ({unit})" if unit else ""
            ax.set_xlabel(f"known{suffix}")
            ax.set_ylabel(f"predicted{suffix}")
            ax.set_title(moment_label(names[j]), fontweight="bold")
            r = _pearson(x, y)
            ax.text(0.04, 0.96, "r = n/a" if r is None else f"r = {r:.3f}", transform=ax.transAxes,
                    ha="left", va="top", fontsize=10.5,
                    bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})
            ax.grid(True, color="0.92", lw=0.8, zorder=0)
        cbar = fig.colorbar(scatter, ax=axes[:m].tolist(), ticks=distinct, shrink=0.85, aspect=30, pad=0.02)
        cbar.set_label("P (GPa)", fontsize=11)
        cbar.ax.set_yticklabels([f"{value:g}" for value in distinct])
        key = [Line2D([], [], ls="", marker="o", color="0.35", alpha=0.6, markersize=6, label="one sample"),
               Line2D([], [], ls="", marker="X", markerfacecolor="0.6", markeredgecolor="black", markersize=11,
                      label="mean per pressure"),
               Line2D([], [], ls="--", color="0.45", label="y = x")]
        fig.legend(handles=key, loc="outside lower center", ncols=3, frameon=False)
        title = "Emulator parity: predicted vs known spectral moments" if ncols >= 3 else "Emulator parity"
        fig.suptitle(f"{title} ({n} samples)", x=0.01, ha="left", fontweight="bold")
        return _save(fig, path)


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two 1-D arrays; None when undefined (fewer than 2 points, constant)."""
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def mean_spectra_plot(energy, intensity, labels, path, windows=None, offset=None) -> Path:
    """Mean site spectrum per pressure, stacked with a vertical offset, with the moment windows shaded.

    :param energy: (n_E,) energy grid in eV relative to E_ref, increasing.
    :param intensity: (n, n_E) site spectra in states/eV on that grid.
    :param labels: (n,) pressure of each spectrum in GPa; one mean curve per distinct value,
        stacked from the lowest pressure (bottom) to the highest (top), each annotated with its
        pressure and its number of spectra.
    :param path: where to write the PNG.
    :param windows: mapping name -> (lo, hi) in eV to shade; default Kβ″ (-24, -13) and Kβ2 (-12, 2).
        An empty mapping shades nothing.
    :param offset: vertical offset between curves (states/eV); default 0.6 × the largest mean intensity.
    :returns: the path written.
    :raises ValueError: on empty, non-finite or mismatched input, bad windows or a negative offset.
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    if energy.size < 2 or np.any(np.diff(energy) <= 0):
        raise ValueError(f"`energy` must be strictly increasing with at least 2 points; got {energy.size} point(s)")
    intensity = as_finite_array(intensity, "intensity", ndim=(1, 2))
    intensity = np.atleast_2d(intensity)
    if intensity.shape[1] != energy.size:
        raise ValueError(f"`intensity` has {intensity.shape[1]} energy columns but `energy` has {energy.size} points")
    labels = _label_array(labels, "labels", intensity.shape[0])
    windows = DEFAULT_WINDOWS if windows is None else windows
    windows = check_windows(windows) if len(windows) else {}  # no windows: nothing shaded
    path = _output_path(path)

    distinct = np.unique(labels)
    means = np.array([intensity[labels == value].mean(axis=0) for value in distinct])
    counts = [int(np.count_nonzero(labels == value)) for value in distinct]
    top = float(np.max(means))
    if offset is None:
        offset = 0.6 * top if top > 0 else 1.0
    else:
        try:
            offset = float(offset)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`offset` must be a non-negative number; got {offset!r}") from exc
        if not np.isfinite(offset) or offset < 0:
            raise ValueError(f"`offset` must be a non-negative number; got {offset!r}")

    colours = _colours(distinct)
    with matplotlib.rc_context(_RC):
        fig = _figure(8.0, 3.2 + 0.9 * len(distinct))
        ax = fig.subplots()
        handles = []
        for i, (name, (lo, hi)) in enumerate(windows.items()):
            handles.append(ax.axvspan(lo, hi, color=_WINDOW_COLOURS[i % len(_WINDOW_COLOURS)], alpha=0.55, lw=0,
                                      zorder=0, label=f"{_window_label(name)} window ({_num(lo)} to {_num(hi)} eV)"))
        span = energy[-1] - energy[0]
        for i, (value, mean, count, colour) in enumerate(zip(distinct, means, counts, colours)):
            base = i * offset
            ax.axhline(base, color="0.75", lw=0.7, zorder=1)
            ax.plot(energy, mean + base, color=colour, lw=1.9, zorder=3)
            ax.fill_between(energy, base, mean + base, color=colour, alpha=0.12, lw=0, zorder=2)
            ax.text(energy[0] + 0.015 * span, base + 0.12 * max(offset, 0.05 * top), f"{_gpa(value)}  (n = {count})",
                    color=colour, fontsize=10.5, fontweight="bold", ha="left", va="bottom", zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75})
        ymax = float(np.max(means + offset * np.arange(len(distinct))[:, None]))
        ax.set_xlim(energy[0], energy[-1])
        ax.set_ylim(-0.04 * ymax if ymax > 0 else -1, ymax * 1.12 if ymax > 0 else 1)
        ax.set_xlabel(r"$E - E_\mathrm{ref}$ (eV)")
        ax.set_ylabel("intensity (states/eV, offset)")
        ax.set_title(f"Mean Kβ site spectrum per pressure ({intensity.shape[0]} spectra)", fontweight="bold")
        if handles:
            ax.legend(handles=handles, loc="upper right", framealpha=0.9)
        return _save(fig, path)


def covered_variance_plot(covered_y, covered_x, path, covered_y_held_out=None) -> Path:
    """Cumulative variance covered by the first 1..k ECA components, in Y and in X.

    :param covered_y: (k,) cumulative fraction (0..1) of the spectral-moment (Y) variance covered, on the
        rows ECA was fitted on.
    :param covered_x: (k,) cumulative fraction (0..1) of the descriptor (X) variance covered.
    :param path: where to write the PNG.
    :param covered_y_held_out: optional (k,) the same as ``covered_y`` on held-out rows (drawn dashed); at
        most 1, and below 0 where the components explain held-out moments worse than their mean does.
    :returns: the path written.
    :raises ValueError: on empty, non-finite or mismatched input, or values outside 0..1 (above 1 for the
        held-out curve).
    """
    covered_y = as_finite_array(covered_y, "covered_y", ndim=1)
    covered_x = as_finite_array(covered_x, "covered_x", ndim=1)
    if covered_x.shape != covered_y.shape:
        raise ValueError(f"`covered_x` has {covered_x.size} components but `covered_y` has {covered_y.size}")
    for name, values in (("covered_y", covered_y), ("covered_x", covered_x)):
        if values.min() < -1e-6 or values.max() > 1 + 1e-6:
            raise ValueError(f"`{name}` must be fractions in 0..1; got values in [{values.min():g}, {values.max():g}]")
    held_out = None
    if covered_y_held_out is not None:
        held_out = as_finite_array(covered_y_held_out, "covered_y_held_out", ndim=1)
        if held_out.shape != covered_y.shape:
            raise ValueError(f"`covered_y_held_out` has {held_out.size} components but `covered_y` has "
                             f"{covered_y.size}")
        if held_out.max() > 1 + 1e-6:
            raise ValueError(f"`covered_y_held_out` must be fractions of at most 1; got {held_out.max():g}")
    path = _output_path(path)

    k = covered_y.size
    components = np.arange(1, k + 1)
    # (values, label, colour, marker, line style, offset of the value labels in points)
    curves = [(covered_y, "moments (Y)" + (", training rows" if held_out is not None else ""), "#1f77b4", "o", "-",
               (0, 8)),
              (covered_x, "descriptors (X)", "#d62728", "s", "-", (0, -15))]
    if held_out is not None:  # its value labels to the right of its points, clear of the other two
        curves.insert(1, (held_out, "moments (Y), held-out rows", "#1f77b4", "D", "--", (9, -3)))
    low = min(0.0, float(held_out.min()) - 0.05) if held_out is not None else 0.0
    with matplotlib.rc_context(_RC):
        fig = _figure(max(5.5, 3.5 + 0.45 * k), 4.3)
        ax = fig.subplots()
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":", zorder=1)
        if low < 0:
            ax.axhline(0.0, color="0.6", lw=0.8, ls=":", zorder=1)
        for values, label, colour, marker, style, offset in curves:
            ax.plot(components, values, marker=marker, ms=7, lw=2, ls=style, color=colour, label=label,
                    mfc="white" if style == "--" else colour, clip_on=False, zorder=3)
            if k <= 12:
                for c, v in zip(components, values):
                    ax.annotate(f"{v:.2f}", (c, v), textcoords="offset points", xytext=offset,
                                ha="center" if offset[0] == 0 else "left", fontsize=8.5, color=colour)
        ax.set_xlim(0.5, k + 0.5)
        ax.set_ylim(low, 1)
        ax.set_xticks(components if k <= 20 else np.unique(np.linspace(1, k, 10).round().astype(int)))
        ax.set_xlabel("number of ECA components")
        ax.set_ylabel("cumulative covered variance")
        ax.set_title("ECA: variance covered by the first components", fontweight="bold", pad=18)
        ax.grid(True, axis="y", color="0.92", lw=0.8, zorder=0)
        ax.legend(loc="lower right" if held_out is None else "best", framealpha=0.9)
        return _save(fig, path)


#: Colours of the models of a learning curve (others cycle through tab10).
_MODEL_COLOURS = {"ridge": "#4d4d4d", "network": "#d62728", "selected": "#1f77b4"}


def _curve_arrays(curves, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{model: ((k,) mean training sites, (k, n_repeats, m) scores)} checked; NaN scores mean undefined."""
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("`curves` must be a non-empty mapping model name -> learning_curve() output "
                         f"(with 'n_train_sites' and {metric!r}); got {type(curves).__name__}")  # noqa: TRY004
    checked = {}
    for model, curve in curves.items():
        where = f"curves[{model!r}]"
        if not isinstance(curve, Mapping) or "n_train_sites" not in curve or metric not in curve:
            raise ValueError(f"`{where}` must hold 'n_train_sites' and {metric!r} arrays, as "
                             "aiida_xesml.ml.learning_curve.learning_curve returns them")
        sites = as_finite_array(curve["n_train_sites"], f"{where}['n_train_sites']", ndim=(1, 2))
        sites = sites.mean(axis=1) if sites.ndim == 2 else sites
        if np.any(sites <= 0):
            raise ValueError(f"`{where}['n_train_sites']` must be positive numbers of sites")
        try:
            scores = np.asarray(curve[metric], dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`{where}[{metric!r}]` must be a numeric (k, n_repeats, m) array") from exc
        scores = scores[:, None, :] if scores.ndim == 2 else scores
        if scores.ndim != 3 or scores.shape[0] != sites.size or scores.size == 0:
            raise ValueError(f"`{where}[{metric!r}]` has shape {np.shape(curve[metric])}; expected ({sites.size}, "
                             "n_repeats, m): one row per training size")
        if np.any(np.isinf(scores)) or np.any(scores > 1 + 1e-9):
            raise ValueError(f"`{where}[{metric!r}]` must be scores of at most 1 (NaN where undefined)")
        checked[str(model)] = (sites, scores)
    widths = {scores.shape[2] for _, scores in checked.values()}
    if len(widths) > 1:
        raise ValueError(f"`curves` hold different numbers of targets per model: {sorted(widths)}")
    return checked


def learning_curve_plot(curves, names, path, metric: str = "pearson_r") -> Path:
    """Held-out skill per target against the number of training sites, one line per model.

    :param curves: mapping model name (e.g. ``'ridge'``, ``'network'``) -> the dict
        :func:`aiida_xesml.ml.learning_curve.learning_curve` returns: ``n_train_sites`` (k,) or
        (k, n_repeats) training sites per size, and ``metric`` (k, n_repeats, m) held-out scores,
        NaN where undefined. Lines are the mean over the repeats, bands ± one standard deviation.
    :param names: (m,) target names such as ``'kbpp_m0'`` (see :func:`moment_label`).
    :param path: where to write the PNG.
    :param metric: ``'pearson_r'`` (held-out Pearson r) or ``'r2'`` (held-out R²).
    :returns: the path written.
    :raises ValueError: on a bad ``metric``, empty or mismatched ``curves`` or ``names`` (the message names
        the argument).
    """
    if metric not in ("pearson_r", "r2"):
        raise ValueError(f"`metric` must be 'pearson_r' or 'r2'; got {metric!r}")
    checked = _curve_arrays(curves, metric)
    m = next(iter(checked.values()))[1].shape[2]
    if isinstance(names, str):
        raise ValueError("`names` must be a sequence of target names, not a single string")  # noqa: TRY004
    names = [str(name) for name in np.asarray(names, dtype=object).ravel()]
    if len(names) != m:
        raise ValueError(f"`names` has {len(names)} entries but the curves have {m} targets")
    path = _output_path(path)

    fallback = iter(colormaps["tab10"].colors)
    colours = {model: _MODEL_COLOURS.get(model) or next(fallback) for model in checked}
    n_repeats = max(scores.shape[1] for _, scores in checked.values())
    summaries = {}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a size where every repeat is undefined stays NaN
        for model, (sites, scores) in checked.items():
            summaries[model] = (sites, np.nanmean(scores, axis=1), np.nanstd(scores, axis=1))
    finite = np.concatenate([(mean - std)[np.isfinite(mean - std)] for _, mean, std in summaries.values()] + [[0.0]])
    low = min(0.0, float(finite.min()) - 0.05)
    ncols = min(4, m)
    nrows = math.ceil(m / ncols)
    label = "held-out Pearson r" if metric == "pearson_r" else "held-out R²"
    with matplotlib.rc_context(_RC):
        fig = _figure(max(3.2 * ncols + 0.6, 5.2), 2.9 * nrows + 0.9)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)).ravel()
        for j, ax in enumerate(axes):
            if j >= m:
                ax.set_visible(False)
                continue
            for model, (sites, mean, std) in summaries.items():
                ax.plot(sites, mean[:, j], marker="o", ms=5, lw=1.8, color=colours[model], label=model, zorder=3)
                if n_repeats > 1:
                    ax.fill_between(sites, mean[:, j] - std[:, j], mean[:, j] + std[:, j], color=colours[model],
                                    alpha=0.15, lw=0, zorder=2)
            ax.axhline(0.0, color="0.6", lw=0.8, ls=":", zorder=1)
            ax.set_ylim(low, 1.03)  # room for points at r = 1
            ax.set_title(moment_label(names[j]), fontweight="bold")
            ax.grid(True, color="0.92", lw=0.8, zorder=0)
            if j % ncols == 0:
                ax.set_ylabel(label)
            if j >= m - ncols:
                ax.set_xlabel("training sites")
                ax.tick_params(labelbottom=True)
        handles = [Line2D([], [], color=colours[model], marker="o", lw=1.8, label=model) for model in summaries]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        band = f"mean ± std over {n_repeats} repeats" if n_repeats > 1 else "one repeat"
        fig.suptitle(f"Learning curve: {label} against training sites (whole snapshots held out; {band})",
                     x=0.01, ha="left", fontweight="bold")
        return _save(fig, path)


def _distance_array(value, name: str) -> np.ndarray:
    """(k, n_slots) distances in Å; NaN and inf mean "no atom" and are kept; finite ones must be >= 0."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a numeric (k, n_slots) array in Å; got {type(value).__name__}") from exc
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (k, n_slots); got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape})")
    finite = np.isfinite(array)
    if np.any(array[finite] < 0):
        raise ValueError(f"`{name}` holds negative distances; distances are in Å and >= 0")
    return array


def reconstruction_plot(labels, true_distances, reconstructed_distances, true_cn, reconstructed_cn, path,
                        n_shown=8, reconstructed_distances_spread=None, reconstructed_cn_spread=None) -> Path:
    """True against reconstructed local structure around Ge, per pressure.

    Left: distance from Ge of the first ``n_shown`` neighbour slots (true: filled circles,
    reconstructed: open squares; one colour per pressure). Right: coordination number against
    pressure, true and reconstructed.

    :param labels: (k,) pressures in GPa, one per reconstructed structure.
    :param true_distances: (k, n_slots) sorted Ge–neighbour distances in Å; NaN or inf means no
        atom in that slot and is skipped.
    :param reconstructed_distances: (k, n_slots') the reconstructed distances, same convention.
    :param true_cn: (k,) true Ge coordination numbers.
    :param reconstructed_cn: (k,) reconstructed coordination numbers.
    :param path: where to write the PNG.
    :param n_shown: how many neighbour slots to show (positive integer).
    :param reconstructed_distances_spread: (k, n_slots') error bars (Å) of the reconstructed distances, e.g. the
        spread over an emulator ensemble; None or NaN: no bar.
    :param reconstructed_cn_spread: (k,) error bars of the reconstructed coordination numbers.
    :returns: the path written.
    :raises ValueError: on empty, mismatched or invalid input (the message names the argument).
    """
    labels = as_finite_array(labels, "labels", ndim=1)
    k = labels.size
    true_distances = _distance_array(true_distances, "true_distances")
    reconstructed_distances = _distance_array(reconstructed_distances, "reconstructed_distances")
    for name, array in (("true_distances", true_distances), ("reconstructed_distances", reconstructed_distances)):
        if array.shape[0] != k:
            raise ValueError(f"`{name}` has {array.shape[0]} rows but `labels` has {k}; one row per pressure")
    true_cn = _label_array(true_cn, "true_cn", k)
    reconstructed_cn = _label_array(reconstructed_cn, "reconstructed_cn", k)
    distance_spread = (np.full(reconstructed_distances.shape, np.nan) if reconstructed_distances_spread is None
                       else np.asarray(reconstructed_distances_spread, dtype=float))
    if distance_spread.shape != reconstructed_distances.shape:
        raise ValueError(f"`reconstructed_distances_spread` has shape {distance_spread.shape}; expected "
                         f"{reconstructed_distances.shape}, one error bar per reconstructed distance")
    cn_spread = (np.full(k, np.nan) if reconstructed_cn_spread is None
                 else np.asarray(reconstructed_cn_spread, dtype=float).reshape(-1))
    if cn_spread.shape != (k,):
        raise ValueError(f"`reconstructed_cn_spread` has {cn_spread.size} values but `labels` has {k}")
    if isinstance(n_shown, bool) or not isinstance(n_shown, (int, np.integer)) or n_shown < 1:
        raise ValueError(f"`n_shown` must be a positive integer; got {n_shown!r}")
    path = _output_path(path)

    order = np.argsort(labels, kind="stable")
    colours = dict(zip(order, _colours(labels[order])))
    n_slots = min(int(n_shown), max(true_distances.shape[1], reconstructed_distances.shape[1]))
    slots = np.arange(1, n_slots + 1)
    dodge = 0.5 / max(k, 1)
    with matplotlib.rc_context(_RC):
        fig = _figure(12.0, 4.8)
        left, right = fig.subplots(1, 2, width_ratios=[1.6, 1.0])
        for rank, row in enumerate(order):
            shift = (rank - (k - 1) / 2) * dodge
            colour = colours[row]
            for array, marker, filled in ((true_distances, "o", True), (reconstructed_distances, "s", False)):
                values = array[row, :n_slots]
                keep = np.isfinite(values)
                x = slots[: values.size][keep] + shift
                left.scatter(x, values[keep], marker=marker, s=48 if filled else 52, linewidths=1.6,
                             facecolors=colour if filled else "none", edgecolors=colour, zorder=3 if filled else 4)
                if not filled:
                    bars = distance_spread[row, :n_slots][keep]
                    shown = np.isfinite(bars)
                    left.errorbar(x[shown], values[keep][shown], yerr=bars[shown], fmt="none", ecolor=colour,
                                  elinewidth=1.2, capsize=3, zorder=4)
        left.set_xticks(slots)
        left.set_xlim(0.4, n_slots + 0.6)
        left.set_xlabel("neighbour slot (sorted by distance)")
        left.set_ylabel("distance from Ge (Å)")
        left.set_title(f"Ge–neighbour distances, first {n_slots} slots", fontweight="bold")
        left.grid(True, axis="y", color="0.92", lw=0.8, zorder=0)
        pressure_key = [Line2D([], [], ls="", marker="o", color=colours[row], markersize=8, label=_gpa(labels[row]))
                        for row in order]
        style_key = [Line2D([], [], ls="", marker="o", color="0.3", markersize=7, label="true"),
                     Line2D([], [], ls="", marker="s", markerfacecolor="none", markeredgecolor="0.3",
                            markeredgewidth=1.6, markersize=7, label="reconstructed")]
        first = left.legend(handles=pressure_key, loc="upper left", title="P (GPa)", ncols=1 if k <= 5 else 2,
                            framealpha=0.9)
        left.add_artist(first)
        left.legend(handles=style_key, loc="lower right", framealpha=0.9)

        p = labels[order]
        right.plot(p, true_cn[order], "-o", color="0.2", lw=2, ms=8, label="true", zorder=3)
        bars = cn_spread[order]
        right.errorbar(p, reconstructed_cn[order], yerr=np.where(np.isfinite(bars), bars, 0.0), fmt="--s",
                       color="#d62728", lw=2, ms=8, mfc="none", mew=1.8, elinewidth=1.4, capsize=4,
                       label="reconstructed (± ensemble)" if np.isfinite(bars).any() else "reconstructed", zorder=4)
        if np.ptp(p) == 0:
            right.set_xlim(p[0] - 1, p[0] + 1)
        spread = np.nan_to_num(cn_spread)
        cn_all = np.concatenate([true_cn, reconstructed_cn + spread, reconstructed_cn - spread])
        low, high = float(cn_all.min()), float(cn_all.max())
        margin = max(0.3, 0.1 * (high - low))
        right.set_ylim(low - margin, high + margin)
        right.set_xlabel("P (GPa)")
        right.set_ylabel("Ge coordination number")
        right.set_title("Coordination number vs pressure", fontweight="bold")
        right.grid(True, color="0.92", lw=0.8, zorder=0)
        right.legend(loc="best", framealpha=0.9)
        fig.suptitle("Structure reconstruction: true vs reconstructed", x=0.01, ha="left", fontweight="bold")
        return _save(fig, path)


def pipeline_figures(data: Mapping, folder) -> list[Path]:
    """The demo's four figures as PNG files in ``folder``: parity, mean spectra, ECA covered variance and
    reconstruction, from the plain arrays of :func:`aiida_xesml.query.pipeline_figure_data`."""
    folder = Path(folder)
    reconstruction = data["reconstruction"]
    return [
        parity_plot(data["moments"], data["predicted_moments"], data["moment_names"], data["row_labels"],
                    folder / "parity.png"),
        mean_spectra_plot(data["energy_ev"], data["intensity"], data["spectra_labels"], folder / "mean_spectra.png"),
        covered_variance_plot(data["covered_variance_y"], data["covered_variance_x"], folder / "eca_covered_variance.png",
                              covered_y_held_out=data["covered_variance_y_held_out"]),
        reconstruction_plot(
            reconstruction["label"], reconstruction["true_distances_angstrom"], reconstruction["distances_angstrom"],
            reconstruction["true_cn"], reconstruction["cn"], folder / "reconstruction.png",
            reconstructed_distances_spread=reconstruction["distances_angstrom_spread"],
            reconstructed_cn_spread=reconstruction["cn_spread"]),
    ]
