"""Progress bars of the core's long loops: on stderr when asked for, silent otherwise, same results."""

import numpy as np
import pytest

from aiida_xesml.ml.dataset import featurize_snapshots
from aiida_xesml.ml.descriptors import LocalCoulombMatrix, local_coulomb_matrices
from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.emulator import MLPEmulator
from aiida_xesml.ml.ensemble import ensemble_statistics
from aiida_xesml.ml.progress import progress, show_progress
from aiida_xesml.ml.reconstruct import reconstruct_targets
from aiida_xesml.ml.structures import quartz_geo2, rutile_geo2


@pytest.fixture(scope="module")
def snapshots():
    cells = []
    for seed in range(6):
        for make in (quartz_geo2, rutile_geo2):
            atoms = make()
            atoms.rattle(0.05, seed=seed)
            cells.append(atoms)
    return cells


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6))
    Y = np.column_stack([np.tanh(X[:, 0] + X[:, 1]), X[:, 2] ** 2, X[:, 0] - X[:, 3]])
    emulator = MLPEmulator(hidden_layer_sizes=(16,), alpha=1e-2, max_iter=1000, random_state=0).fit(X, Y)
    return emulator, X, Y


def test_progress_helper(capfd):
    assert list(progress(range(3), desc="quiet")) == [0, 1, 2]
    assert capfd.readouterr() == ("", "")
    assert list(progress(range(3), desc="loud", enabled=True)) == [0, 1, 2]
    out, err = capfd.readouterr()
    assert out == "" and "loud" in err and "3/3" in err
    with show_progress():
        list(progress(range(2), desc="forced"))
    assert "forced" in capfd.readouterr().err
    with show_progress(False):  # does not switch off an explicit request
        list(progress(range(2), desc="still", enabled=True))
    assert "still" in capfd.readouterr().err
    list(progress(range(2), desc="after"))  # the context is undone
    assert capfd.readouterr().err == ""


def test_descriptors_bar_and_same_values(snapshots, capfd, monkeypatch):
    import aiida_xesml.ml.descriptors as descriptors

    quiet = local_coulomb_matrices(snapshots, n_atoms=10)
    assert capfd.readouterr() == ("", "")
    monkeypatch.setattr(descriptors, "BATCH_SITES", 5)  # several passes, as for a large data set
    loud = local_coulomb_matrices(snapshots, n_atoms=10, verbose=True)
    err = capfd.readouterr().err
    assert "Coulomb matrices" in err and f"{len(quiet)}/{len(quiet)}" in err
    np.testing.assert_array_equal(loud, quiet)
    np.testing.assert_array_equal(LocalCoulombMatrix(n_atoms=10, verbose=True).fit_transform(snapshots), quiet)
    np.testing.assert_array_equal(featurize_snapshots(snapshots, n_atoms=10, verbose=True)["descriptors"], quiet)
    assert "Coulomb matrices" in capfd.readouterr().err


def test_ensemble_statistics_bar(snapshots, capfd):
    quiet = ensemble_statistics(snapshots)
    assert capfd.readouterr() == ("", "")
    assert ensemble_statistics(snapshots, verbose=True) == quiet
    assert f"{len(snapshots)}/{len(snapshots)}" in capfd.readouterr().err


def test_eca_bars_and_same_results(fitted, capfd):
    emulator, X, Y = fitted
    quiet = ECA(emulator, n_components=2, random_state=0).fit(X, Y)
    scores_quiet = quiet.inverse(Y[:5])
    assert capfd.readouterr() == ("", "")
    loud = ECA(emulator, n_components=2, random_state=0, verbose=True).fit(X, Y)
    err = capfd.readouterr().err
    # 2 components x (2 guided + 2 random screened starts + 1 final fit)
    assert "ECA fit" in err and "10/10" in err and "component 2/2" in err
    scores_loud = loud.inverse(Y[:5])
    assert "ECA inverse" in capfd.readouterr().err
    np.testing.assert_array_equal(loud.components_, quiet.components_)
    np.testing.assert_array_equal(loud.covered_variance_, quiet.covered_variance_)
    np.testing.assert_array_equal(scores_loud, scores_quiet)

    target = Y[:2]
    silent = reconstruct_targets(quiet, target, n_atoms=3, n_starts=3)
    assert capfd.readouterr() == ("", "")
    shown = reconstruct_targets(quiet, target, n_atoms=3, n_starts=3, verbose=True)
    assert "ECA inverse" in capfd.readouterr().err
    assert silent.keys() == shown.keys()
    for key in silent:
        np.testing.assert_array_equal(shown[key], silent[key])


def test_show_progress_reaches_a_calcfunction(capfd, aiida_profile):
    """A command turns the bars on around a calcfunction, whose inputs stay as they are."""
    from aiida import orm
    from aiida.engine import calcfunction

    @calcfunction
    def count(n: orm.Int) -> orm.Int:
        return orm.Int(sum(1 for _ in progress(range(n.value), desc="inside")))

    count(orm.Int(3))
    assert "inside" not in capfd.readouterr().err
    with show_progress(True):
        assert count(orm.Int(3)).value == 3
    assert "inside" in capfd.readouterr().err
