"""Figures: every plot writes a real, non-blank PNG; bad input raises a ValueError naming the argument."""

import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from aiida_xesml.plotting import (
    covered_variance_plot,
    learning_curve_plot,
    mean_spectra_plot,
    moment_label,
    parity_plot,
    reconstruction_plot,
)

PRESSURES = (0.0, 15.0, 30.0)
ROWS_PER_LABEL = 40
NAMES = ["kbpp_m0", "kbpp_m1", "kbpp_m2", "kbpp_m3", "kb2_m0", "kb2_m1", "kb2_m2", "kb2_m3"]
ENERGY = np.arange(-30.0, 5.0001, 0.05)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset():
    """3 pressures × 40 sites: moments with a pressure-dependent shift, and matching Gaussian spectra."""
    rng = np.random.default_rng(7)
    labels = np.repeat(PRESSURES, ROWS_PER_LABEL)
    p = labels / 30.0
    base = np.array([0.35, -18.0, 1.1, 0.1, 1.6, -4.5, 1.8, -0.4])
    slope = np.array([0.12, 1.2, -0.15, 0.2, 0.2, 0.6, -0.2, 0.3])
    noise = np.array([0.03, 0.35, 0.08, 0.15, 0.08, 0.25, 0.1, 0.15])
    known = base + p[:, None] * slope + rng.normal(size=(labels.size, 8)) * noise
    predicted = known + rng.normal(size=known.shape) * noise * 0.5

    kbpp_centre = -17.5 + 1.0 * p + rng.normal(scale=0.3, size=p.size)
    kb2_centre = -4.5 + 0.6 * p + rng.normal(scale=0.3, size=p.size)

    def gaussian(centre, sigma, area):
        return area * np.exp(-0.5 * ((ENERGY - centre[:, None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))

    intensity = gaussian(kbpp_centre, 1.0, 0.35 + 0.1 * p[:, None]) + gaussian(kb2_centre, 1.6, 1.6)
    return {"labels": labels, "known": known, "predicted": predicted, "intensity": intensity}


def assert_real_png(path, min_non_white=0.02):
    """The file is a PNG of more than 10 kB whose pixels are not all the same and not mostly white."""
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    pixels = imread(path)[..., :3]
    assert pixels.std() > 0.05
    non_white = np.mean(np.any(pixels < 0.95, axis=-1))
    assert non_white > min_non_white, f"only {non_white:.1%} of the pixels are not white"
    return pixels


@pytest.mark.parametrize(("name", "expected"), [
    ("kbpp_m0", "Kβ″ M0"), ("kbpp_m3", "Kβ″ M3"), ("kb2_m1", "Kβ2 M1"), ("kb2_m2", "Kβ2 M2"),
    ("w0_m1", "w0_m1"), ("cn", "cn"),
])
def test_moment_label(name, expected):
    assert moment_label(name) == expected


def test_parity_plot(dataset, tmp_path):
    path = tmp_path / "sub" / "parity.png"
    result = parity_plot(dataset["known"], dataset["predicted"], NAMES, dataset["labels"], path)
    assert result == path
    pixels = assert_real_png(path)
    # 2 × 4 panels plus a colour bar: a wide figure
    assert pixels.shape[1] > pixels.shape[0]


def test_parity_plot_single_moment_and_str_path(dataset, tmp_path):
    path = parity_plot(dataset["known"][:, :1], dataset["predicted"][:, :1], ["kbpp_m1"], dataset["labels"],
                       str(tmp_path / "one.png"))
    assert path == tmp_path / "one.png"
    assert_real_png(path)


def test_mean_spectra_plot(dataset, tmp_path):
    path = mean_spectra_plot(ENERGY, dataset["intensity"], dataset["labels"], tmp_path / "spectra.png")
    pixels = assert_real_png(path)
    # the default offset stacks three curves: a custom, larger offset and no windows still renders
    other = mean_spectra_plot(ENERGY, dataset["intensity"], dataset["labels"], tmp_path / "spectra2.png",
                              windows={}, offset=1.0)
    assert not np.array_equal(assert_real_png(other), pixels)


def test_covered_variance_plot(tmp_path):
    covered_y = np.array([0.81, 0.93, 0.97, 0.99, 1.0])
    covered_x = np.array([0.22, 0.38, 0.51, 0.60, 0.67])
    path = covered_variance_plot(covered_y, covered_x, tmp_path / "covered.png")
    assert_real_png(path)


def test_covered_variance_plot_with_a_held_out_curve(tmp_path):
    covered_y, covered_x = np.array([0.81, 0.93, 0.97]), np.array([0.22, 0.38, 0.51])
    plain = assert_real_png(covered_variance_plot(covered_y, covered_x, tmp_path / "plain.png"))
    # held-out covered variance may fall below 0 (worse than the held-out mean): the axis extends to it
    held = assert_real_png(covered_variance_plot(covered_y, covered_x, tmp_path / "held.png",
                                                 covered_y_held_out=[0.55, 0.70, -0.20]))
    assert not np.array_equal(plain, held)


def learning_curves(n_sizes=4, n_repeats=3, m=8, seed=0):
    """Two models' curves in the layout learning_curve returns, the network's r lower at small sizes."""
    rng = np.random.default_rng(seed)
    sites = np.array([20, 50, 100, 200])[:n_sizes, None] + rng.integers(0, 5, size=(n_sizes, n_repeats))
    curves = {}
    for model, scale in (("ridge", 2.0), ("network", 4.0)):
        r = 1 - scale / np.sqrt(sites)[:, :, None] + 0.03 * rng.normal(size=(n_sizes, n_repeats, m))
        curves[model] = {"n_train_sites": sites, "pearson_r": np.clip(r, -1, 1), "r2": np.clip(r, -1, 1) ** 2}
    return curves


def test_learning_curve_plot(tmp_path):
    curves = learning_curves()
    path = learning_curve_plot(curves, NAMES, tmp_path / "sub" / "curve.png")
    assert path == tmp_path / "sub" / "curve.png"
    pixels = assert_real_png(path)
    assert pixels.shape[1] > pixels.shape[0]  # 2 x 4 panels
    # one repeat (no band), an undefined size (NaN), R² and 3 targets with other names still render
    one = {model: {"n_train_sites": c["n_train_sites"][:, 0], "r2": c["r2"][:, 0, :3]} for model, c in curves.items()}
    one["ridge"]["r2"][0, 1] = np.nan
    assert_real_png(learning_curve_plot(one, ["a", "b", "c"], tmp_path / "one.png", metric="r2"))
    assert not np.array_equal(assert_real_png(learning_curve_plot({"ridge": curves["ridge"]}, NAMES,
                                                                  tmp_path / "ridge.png")), pixels)


def test_reconstruction_plot(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.array([30.0, 0.0, 15.0])  # unsorted on purpose
    true_cn = np.array([6.0, 4.0, 5.0])
    true = np.full((3, 10), np.inf)  # inf: no atom in that slot
    for row, cn in enumerate(true_cn):
        n = int(cn)
        shell = 1.74 + 0.025 * (cn - 4) + rng.normal(scale=0.02, size=n)  # Ge-O first shell
        outer = 3.0 + np.cumsum(rng.uniform(0.05, 0.2, size=9 - n))  # Ge-Ge and second-shell O
        true[row, : 9] = np.sort(np.concatenate([shell, outer]))
    reconstructed = true + rng.normal(scale=0.04, size=true.shape)
    reconstructed[1, 7:] = np.nan  # NaN: no atom either
    path = reconstruction_plot(labels, true, reconstructed, true_cn, [5.7, 4.1, 5.2],
                               tmp_path / "reconstruction.png", n_shown=8)
    assert_real_png(path)
    with_bars = reconstruction_plot(labels, true, reconstructed, true_cn, [5.7, 4.1, 5.2], tmp_path / "bars.png",
                                    reconstructed_distances_spread=np.full(true.shape, 0.03),
                                    reconstructed_cn_spread=[0.2, np.nan, 0.1])
    assert_real_png(with_bars)
    assert with_bars.read_bytes() != path.read_bytes()  # the error bars are drawn


@pytest.mark.parametrize(("call", "argument"), [
    (lambda d, p: parity_plot(d["known"], d["predicted"][:, :7], NAMES, d["labels"], p), "predicted"),
    (lambda d, p: parity_plot(d["known"], d["predicted"], NAMES[:7], d["labels"], p), "names"),
    (lambda d, p: parity_plot(d["known"], d["predicted"], NAMES, d["labels"][:-1], p), "labels"),
    (lambda d, p: parity_plot(np.empty((0, 8)), np.empty((0, 8)), NAMES, [], p), "known"),
    (lambda d, p: mean_spectra_plot(ENERGY[:-1], d["intensity"], d["labels"], p), "intensity"),
    (lambda d, p: mean_spectra_plot(ENERGY, d["intensity"], d["labels"][:5], p), "labels"),
    (lambda d, p: mean_spectra_plot(ENERGY, d["intensity"], d["labels"], p, windows={"kbpp": (-13, -24)}),
     "windows"),
    (lambda d, p: mean_spectra_plot(ENERGY, d["intensity"], d["labels"], p, offset=-1), "offset"),
    (lambda d, p: covered_variance_plot([0.5, 0.9], [0.3], p), "covered_x"),
    (lambda d, p: covered_variance_plot([0.5, 1.7], [0.3, 0.4], p), "covered_y"),
    (lambda d, p: covered_variance_plot([], [], p), "covered_y"),
    (lambda d, p: reconstruction_plot([0, 15], np.ones((3, 4)), np.ones((2, 4)), [4, 5], [4, 5], p),
     "true_distances"),
    (lambda d, p: reconstruction_plot([0, 15], np.ones((2, 4)), np.ones(4), [4, 5], [4, 5], p),
     "reconstructed_distances"),
    (lambda d, p: reconstruction_plot([0, 15], np.ones((2, 4)), np.ones((2, 4)), [4, 5], [4], p),
     "reconstructed_cn"),
    (lambda d, p: reconstruction_plot([0, 15], np.ones((2, 4)), np.ones((2, 4)), [4, 5], [4, 5], p, n_shown=0),
     "n_shown"),
    (lambda d, p: reconstruction_plot([0, 15], np.ones((2, 4)), np.ones((2, 4)), [4, 5], [4, 5], p,
                                      reconstructed_distances_spread=np.ones((2, 3))), "reconstructed_distances_spread"),
    (lambda d, p: reconstruction_plot([0, 15], np.ones((2, 4)), np.ones((2, 4)), [4, 5], [4, 5], p,
                                      reconstructed_cn_spread=[0.1]), "reconstructed_cn_spread"),
    (lambda d, p: covered_variance_plot([0.5, 0.9], [0.3, 0.4], p, covered_y_held_out=[0.4]), "covered_y_held_out"),
    (lambda d, p: covered_variance_plot([0.5, 0.9], [0.3, 0.4], p, covered_y_held_out=[0.4, 1.5]),
     "covered_y_held_out"),
    (lambda d, p: learning_curve_plot({}, NAMES, p), "curves"),
    (lambda d, p: learning_curve_plot({"ridge": {"pearson_r": np.ones((4, 3, 8))}}, NAMES, p), "curves['ridge']"),
    (lambda d, p: learning_curve_plot({"ridge": {**learning_curves()["ridge"], "pearson_r": np.ones((3, 3, 8))}},
                                      NAMES, p), "curves['ridge']['pearson_r']"),
    (lambda d, p: learning_curve_plot({"ridge": {**learning_curves()["ridge"], "n_train_sites": -np.ones((4, 3))}},
                                      NAMES, p), "curves['ridge']['n_train_sites']"),
    (lambda d, p: learning_curve_plot({"ridge": {**learning_curves()["ridge"], "pearson_r": np.full((4, 3, 8), 2.0)}},
                                      NAMES, p), "curves['ridge']['pearson_r']"),
    (lambda d, p: learning_curve_plot({**learning_curves(), "other": learning_curves(m=3)["ridge"]}, NAMES, p),
     "curves"),
    (lambda d, p: learning_curve_plot(learning_curves(), NAMES[:7], p), "names"),
    (lambda d, p: learning_curve_plot(learning_curves(), "kbpp_m0", p), "names"),
    (lambda d, p: learning_curve_plot(learning_curves(), NAMES, p, metric="rmse"), "metric"),
])
def test_bad_input_raises_naming_the_argument(dataset, tmp_path, call, argument):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=re.escape(f"`{argument}")):
        call(dataset, path)
    assert not path.exists()


def test_plotting_imports_neither_aiida_nor_pyplot(tmp_path):
    """Importing and using the module in a fresh interpreter loads neither aiida nor pyplot."""
    script = (
        "import sys, numpy as np\n"
        "from aiida_xesml.plotting import covered_variance_plot\n"
        f"covered_variance_plot(np.array([0.5, 0.9]), np.array([0.2, 0.4]), {str(tmp_path / 'c.png')!r})\n"
        "print(sorted(m for m in ('aiida', 'matplotlib.pyplot') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
