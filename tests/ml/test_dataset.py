"""Rows of the learning problem: featurization keys, joins, splits, ensemble means, inverse weights."""

import numpy as np
import pytest

from aiida_xesml.ml.dataset import (
    SPLIT_KINDS,
    check_min_per_label,
    ensemble_mean_spectra,
    featurize_snapshots,
    join_rows,
    split_rows,
    stratified_split,
)
from aiida_xesml.ml.descriptors import local_coulomb_matrix
from aiida_xesml.ml.reconstruct import inverse_weights
from aiida_xesml.ml.structures import quartz_geo2, rutile_geo2
from aiida_xesml.ml.training import train_emulator, training_settings


def test_featurize_snapshots_keys_every_ge_site():
    structures = [rutile_geo2(), quartz_geo2()]
    rows = featurize_snapshots(structures, n_atoms=8)
    np.testing.assert_array_equal(rows["snapshot_index"], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(rows["site_index"], [0, 1, 0, 1, 2])
    np.testing.assert_allclose(rows["descriptors"][2:], local_coulomb_matrix(quartz_geo2(), n_atoms=8))


def test_join_rows_pairs_equal_keys_in_the_order_of_the_second_table():
    a = [[0, 0], [0, 1], [1, 4]]
    b = [[1, 4], [0, 0]]
    ia, ib = join_rows(a, b)
    np.testing.assert_array_equal(ia, [2, 0])
    np.testing.assert_array_equal(ib, [0, 1])


def test_join_rows_refuses_missing_and_duplicate_keys():
    with pytest.raises(ValueError, match=r"1 row\(s\) of `moments` have no matching"):
        join_rows([[0, 0]], [[0, 0], [3, 1]])
    with pytest.raises(ValueError, match="`descriptors` has duplicate"):
        join_rows([[0, 0], [0, 0]], [[0, 0]])


def test_stratified_split_holds_out_each_label_and_is_seeded():
    label = np.repeat([0.0, 10.0, 20.0], [10, 5, 2])
    train, test = stratified_split(label, 0.2, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(17))
    assert [np.count_nonzero(label[test] == v) for v in (0.0, 10.0, 20.0)] == [2, 1, 1]
    again = stratified_split(label, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(stratified_split(label, 0.2, seed=4)[1], test)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(label, 1.0)


def snapshot_rows(sizes_per_label, seed=0):
    """(groups, label): snapshots of random sizes (5..15 sites) with one label each."""
    rng = np.random.default_rng(seed)
    groups, label, g = [], [], 0
    for value, n_snapshots in sizes_per_label.items():
        for _ in range(n_snapshots):
            n = int(rng.integers(5, 16))
            groups += [g] * n
            label += [value] * n
            g += 1
    order = rng.permutation(len(groups))  # rows need not be sorted by snapshot
    return np.array(groups)[order], np.array(label, dtype=float)[order]


def test_snapshot_split_never_puts_one_snapshot_on_both_sides():
    groups, label = snapshot_rows({0.0: 10, 15.0: 10, 30.0: 2, 45.0: 1})
    for seed in range(5):
        train, test = split_rows("snapshot", groups=groups, label=label, seed=seed)
        assert set(groups[train]).isdisjoint(groups[test])
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
        # every label keeps training rows; labels with >= 2 snapshots are tested too
        assert set(label[train]) == {0.0, 15.0, 30.0, 45.0}
        assert set(label[test]) == {0.0, 15.0, 30.0}
        # 20 % of 10 snapshots is 2 held out per big label, 1 of the 2 at 30 GPa
        assert len(np.unique(groups[test])) == 5
    first = split_rows("snapshot", groups=groups, label=label, seed=1)
    np.testing.assert_array_equal(split_rows("snapshot", groups=groups, label=label, seed=1)[1], first[1])
    assert not np.array_equal(split_rows("snapshot", groups=groups, label=label, seed=2)[1], first[1])


def test_snapshot_split_without_labels_holds_out_about_the_fraction():
    groups = np.repeat(np.arange(40), 12)
    train, test = split_rows(groups=groups, test_fraction=0.25, seed=3)
    assert len(np.unique(groups[test])) == 10 and len(test) == 120
    assert set(groups[train]).isdisjoint(groups[test])


def test_label_split_holds_out_the_highest_label_or_the_chosen_ones():
    groups, label = snapshot_rows({0.0: 3, 15.0: 3, 30.0: 3})
    train, test = split_rows("label", groups=groups, label=label)
    assert set(label[test]) == {30.0} and set(label[train]) == {0.0, 15.0}
    train, test = split_rows("label", label=label, test_labels=[0.0, 15.0])
    assert set(label[test]) == {0.0, 15.0} and set(label[train]) == {30.0}
    assert len(train) + len(test) == len(label)


def test_site_split_is_the_old_stratified_split():
    groups, label = snapshot_rows({0.0: 3, 15.0: 3})
    for got, expected in zip(split_rows("site", groups=groups, label=label, seed=4), stratified_split(label, 0.2, 4)):
        np.testing.assert_array_equal(got, expected)
    assert SPLIT_KINDS == ("snapshot", "label", "site")


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "random", "groups": [0, 1]}, "`kind` must be one of snapshot, label, site"),
    ({"kind": "snapshot"}, r"`groups` \(the snapshot id"),
    ({"kind": "snapshot", "groups": [0, 0, 0]}, "`groups`: 1 snapshot"),
    ({"kind": "snapshot", "groups": [0, 0, 1, 1], "label": [0, 0, 5, 5]}, "none of the labels with a second snapshot"),
    ({"kind": "snapshot", "groups": [0, 0, 1, 1], "label": [0, 5, 5, 5]}, r"`groups`: snapshot\(s\) \[0\] carry more"),
    ({"kind": "snapshot", "groups": [0, 1], "label": [0, 1, 2]}, "`label` has shape"),
    ({"kind": "snapshot", "groups": [0, 1], "test_fraction": 1.0}, "`test_fraction` must lie in"),
    ({"kind": "snapshot", "groups": [0, 1], "seed": -1}, "`seed` must be >= 0"),
    ({"kind": "label", "groups": [0, 1]}, r"`label` \(e.g. the pressure"),
    ({"kind": "label", "label": [5, 5]}, "single value"),
    ({"kind": "label", "label": [0, 5], "test_labels": [7]}, r"`test_labels` \[7.0\] are not labels"),
    ({"kind": "label", "label": [0, 5], "test_labels": [0, 5]}, "cover every label"),
    ({"kind": "label", "label": [0, np.nan]}, "`label` holds 1 NaN"),
])
def test_split_rows_errors_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_rows(**kwargs)


def test_check_min_per_label_names_the_thin_labels():
    check_min_per_label([0, 0, 5, 5], 2)
    with pytest.raises(ValueError, match=r"label\(s\) 5 \(1 rows\) have fewer than 2"):
        check_min_per_label([0, 0, 5], 2)


def test_ensemble_mean_spectra_averages_rows_per_label():
    intensity = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]])
    labels, means, counts = ensemble_mean_spectra(intensity, [5.0, 5.0, 0.0])
    np.testing.assert_array_equal(labels, [0.0, 5.0])
    np.testing.assert_allclose(means, [[10.0, 10.0], [2.0, 3.0]])
    np.testing.assert_array_equal(counts, [1, 2])


def test_inverse_weights_use_held_out_r2_of_m0_and_m1_only():
    names = ["kbpp_m0", "kbpp_m1", "kbpp_m2", "kbpp_m3", "kb2_m0", "kb2_m1", "kb2_m2", "kb2_m3"]
    weights = inverse_weights(names, [0.9, 1.2, 0.9, 0.9, -0.5, 0.5, 0.9, 0.9])
    np.testing.assert_allclose(weights, [0.9, 1.0, 0, 0, 0.0, 0.5, 0, 0])
    with pytest.raises(ValueError, match="nothing to invert"):
        inverse_weights(names, [-1, -1, 1, 1, -1, -1, 1, 1])


def test_train_emulator_is_deterministic_and_reports_held_out_metrics():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 5))
    Y = np.column_stack([X[:, 0] + 0.5 * X[:, 1], np.tanh(X[:, 2])])
    label = np.repeat([0.0, 1.0], 40)
    settings = {"hidden_layer_sizes": [8], "max_iter": 500}
    first = train_emulator(X, Y, label, settings)
    second = train_emulator(X, Y, label, settings)
    np.testing.assert_array_equal(first[0].predict(X), second[0].predict(X))
    assert first[1]["n_test"] == 16 and first[1]["n_train"] == 64
    assert min(first[1]["pearson_r"]) > 0.9
    with pytest.raises(ValueError, match="unknown training setting"):
        training_settings({"learning_rate": 1})


def test_metrics_of_a_constant_held_out_target_are_none():
    """Equivalent sites can give one target the same value on every held-out row: no r, no R²."""
    from aiida_xesml.ml.training import train_emulator

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5))
    Y = np.column_stack([X @ rng.normal(size=5), np.full(40, 2.5)])  # the second target is constant
    _, metrics, _, test = train_emulator(X, Y, settings={"max_iter": 50, "hidden_layer_sizes": [8]})
    assert len(test) > 1
    assert metrics["pearson_r"][1] is None and metrics["r2"][1] is None
    assert isinstance(metrics["pearson_r"][0], float) and np.isfinite(metrics["pearson_r"][0])
    assert metrics["rmse"][1] is not None  # the error itself is defined
