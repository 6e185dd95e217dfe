"""ECA fit speed against a minibatch-Adam reference on the same loss, measured side by side.

The case (issue 12): 10,000 samples x 60 standardized features; 8 smooth targets of 3 hidden
directions (seeded); emulator an MLP (64, 64) tanh fitted first (not timed); 3 components.

In one run this script times

(a) ``ECA.fit`` (this project: active-subspace starts, coarse-to-fine L-BFGS, exact gradients), and
(b) a plain reference written here: minibatch Adam on the same loss, one component at a time with
    the same orthogonality constraint, as the public PyTorch ECA does it, with that
    implementation's defaults: learning rate 1e-3, betas (0.9, 0.999), batch size 200 (batches in
    row order, no shuffling), at most 10,000 epochs, stop after more than 50 epochs when the mean
    loss of the previous 5 epochs exceeds the last epoch's by less than 1e-4 (keeping the previous
    vector if the loss rose), a Xavier-normal start of the unnormalized vector, one Adam state
    across components, the vector's part along earlier components removed after every step, and
    each batch's loss normalized by that batch's own variance. The reference evaluates the
    emulator with ``MLPEmulator.forward_backward_scaled`` on the projected samples, in float64
    (the public code uses float32 torch).

Both run with BLAS on one thread (``threadpoolctl``), as ``ECA.fit`` does, so that thread
contention touches neither. The ratio is taken on CPU time (``time.process_time``: on one thread,
the work done, whatever the machine's load); wall-clock times are printed beside it. Our fit is
timed as the median of 3 runs, interleaved with the reference's.

Targets: speed ratio reference / ours >= 10; our cumulative covered variance >= the reference's
at every component. Also printed: the held-out covered variance on 5,000 fresh rows, and the
emulator-ensemble use case: 5 ECA fits, one per emulator of a 5-member ensemble (seeds), on 2,000
x 210 correlated features (30 latent factors mixed into 210 columns, as the entries of a local
Coulomb matrix are), with a reference run on the first member.

    python benchmarks/eca.py [--samples 10000] [--features 60]
"""

import argparse
import statistics
import time

import numpy as np
from scipy.linalg import subspace_angles
from threadpoolctl import threadpool_limits

from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.emulator import MLPEmulator

REFERENCE = {"lr": 1e-3, "betas": (0.9, 0.999), "batch_size": 200, "epochs": 10_000, "tol": 1e-4, "seed": 123}


def targets(t, rng):
    """8 smooth targets of 3 hidden coordinates t (n, 3), plus 1 % noise."""
    a, b, c = t[:, 0], t[:, 1], 0.5 * t[:, 2]
    Y = np.column_stack([np.sin(a), np.cos(b) + 0.3 * c, a * b, np.tanh(a + b - c), a**2 + c,
                         b, np.exp(-a**2) + c**2, a - b**3 / 5])
    return Y + 0.01 * rng.standard_normal(Y.shape)


def synthetic(n_samples, n_features, seed=0, n_fresh=0):
    """X (n, d) standard normal; Y (n, 8) of 3 hidden orthonormal directions (returned);
    ``n_fresh`` more rows from the same distribution are returned apart (held-out rows)."""
    rng = np.random.default_rng(seed)
    hidden = np.linalg.qr(rng.standard_normal((n_features, 3)))[0]
    X = rng.standard_normal((n_samples + n_fresh, n_features))
    Y = targets(X @ hidden, rng)
    return X[:n_samples], Y[:n_samples], X[n_samples:], Y[n_samples:], hidden


def correlated(n_samples, n_features, n_latent=30, seed=1, n_fresh=0):
    """X (n, d): n_latent standard-normal factors mixed into d columns + 10 % noise; Y (n, 8) of 3
    hidden directions of the factors."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((n_latent, n_features)) / np.sqrt(n_latent)
    hidden = np.linalg.qr(rng.standard_normal((n_latent, 3)))[0]
    Z = rng.standard_normal((n_samples + n_fresh, n_latent))
    X = Z @ mixing + 0.1 * rng.standard_normal((n_samples + n_fresh, n_features))
    Y = targets(Z @ hidden, rng)
    return X[:n_samples], Y[:n_samples], X[n_samples:], Y[n_samples:]


def adam_reference(emulator, X, Y, n_components=3, lr=1e-3, betas=(0.9, 0.999), batch_size=200, epochs=10_000,
                   tol=1e-4, seed=123):
    """Minibatch-Adam ECA as the public implementation does it (see the module docstring).

    Returns (components (k, d), cumulative covered variance (k,), epochs per component)."""
    Xs, Ys = emulator.scale_x(X), emulator.scale_y(Y)
    n, d = Xs.shape
    rng = np.random.default_rng(seed)
    xavier = np.sqrt(2.0 / (1 + d))  # xavier_normal_ on a (1, d) tensor
    V = np.zeros((0, d))
    w = rng.standard_normal(d) * xavier
    m1, m2, t = np.zeros(d), np.zeros(d), 0
    covered, n_epochs = [], []
    total = float(np.sum((Ys - Ys.mean(axis=0)) ** 2))
    for _ in range(n_components):
        losses, previous = [], w.copy()
        for epoch in range(epochs):  # noqa: B007 (read after the loop)
            batch_losses = []
            for start in range(0, n, batch_size):
                xb, yb = Xs[start:start + batch_size], Ys[start:start + batch_size]
                batch_total = float(np.sum((yb - yb.mean(axis=0)) ** 2))
                norm = np.linalg.norm(w)
                v = w / norm
                basis = np.vstack([V, v])
                P = (xb @ basis.T) @ basis

                def residual(Yp, yb=yb, batch_total=batch_total):
                    r = Yp - yb
                    return float(np.sum(r * r)) / batch_total, 2.0 * r / batch_total

                loss, _, gP = emulator.forward_backward_scaled(P, residual)
                gradient = gP.T @ (xb @ v) + xb.T @ (gP @ v)  # dL/dv
                gradient = (gradient - v * (v @ gradient)) / norm  # dL/dw for v = w/|w|
                batch_losses.append(loss)
                t += 1
                m1 = betas[0] * m1 + (1 - betas[0]) * gradient
                m2 = betas[1] * m2 + (1 - betas[1]) * gradient**2
                w = w - lr * (m1 / (1 - betas[0] ** t)) / (np.sqrt(m2 / (1 - betas[1] ** t)) + 1e-8)
                if len(V):
                    w = w - (w @ V.T) @ V
            losses.append(sum(batch_losses) / len(batch_losses))
            if len(losses) > 50:
                change = sum(losses[-6:-1]) / 5 - losses[-1]
                if change < tol:
                    if change < 0:
                        w = previous
                    break
            previous = w.copy()
        n_epochs.append(epoch + 1)
        V = np.vstack([V, w / np.linalg.norm(w)])
        r = emulator.predict_scaled((Xs @ V.T) @ V) - Ys
        covered.append(1.0 - float(np.sum(r * r)) / total)
        w = rng.standard_normal(d) * xavier
        w = w - (w @ V.T) @ V
    return V, np.array(covered), n_epochs


def timed(function, *args, **kwargs):
    """(result, CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def verdict(ok):
    return "PASS" if ok else "FAIL"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--skip-ensemble", action="store_true", help="time only the 10^4 x 60 case")
    args = parser.parse_args()
    with threadpool_limits(limits=1, user_api="blas"):
        run(args)


def run(args):
    X, Y, X_fresh, Y_fresh, hidden = synthetic(args.samples, args.features, n_fresh=5000)
    emulator, _, seconds = timed(MLPEmulator(hidden_layer_sizes=(64, 64), activation="tanh", max_iter=300).fit, X, Y)
    print(f"emulator fit (not timed against anything): {seconds:.1f} s, training R2 {emulator.score(X, Y):.4f}, "
          f"fresh-row R2 {emulator.score(X_fresh, Y_fresh):.4f}")

    ours_cpu, ours_wall = [], []
    eca = None
    for _ in range(3):
        fitted, cpu, wall = timed(ECA(emulator, n_components=3, random_state=0).fit, X, Y)
        ours_cpu.append(cpu)
        ours_wall.append(wall)
        if eca is None:
            eca = fitted
            (V_ref, covered_ref, epochs_ref), reference_cpu, reference_wall = timed(adam_reference, emulator, X, Y,
                                                                                   **REFERENCE)
        else:
            assert np.array_equal(fitted.components_, eca.components_), "ECA.fit is not deterministic"
    ratio = reference_cpu / statistics.median(ours_cpu)
    ratio_wall = reference_wall / statistics.median(ours_wall)
    sine = float(np.sin(subspace_angles(eca.components_.T, hidden)).max())
    sine_ref = float(np.sin(subspace_angles(V_ref.T, hidden)).max())

    print(f"\n{args.samples} x {args.features}, MLP (64, 64) tanh, 3 components; BLAS on 1 thread")
    print(f"reference settings: {REFERENCE}; epochs run per component: {epochs_ref}")
    print(f"{'':34s} {'comp 1':>9s} {'comp 2':>9s} {'comp 3':>9s} {'CPU s':>8s} {'wall s':>8s}")
    print(f"{'covered variance, ECA.fit':34s} " + " ".join(f"{v:9.5f}" for v in eca.covered_variance_)
          + f" {statistics.median(ours_cpu):8.3f} {statistics.median(ours_wall):8.3f}"
          + f"   (CPU s of the 3 runs: {', '.join(f'{t:.3f}' for t in ours_cpu)})")
    print(f"{'covered variance, Adam reference':34s} " + " ".join(f"{v:9.5f}" for v in covered_ref)
          + f" {reference_cpu:8.3f} {reference_wall:8.3f}")
    print(f"{'held-out (5,000 fresh rows), ECA':34s} "
          + " ".join(f"{v:9.5f}" for v in eca.covered_variance(X_fresh, Y_fresh)))
    print(f"{'covered variance of X, ECA':34s} " + " ".join(f"{v:9.5f}" for v in eca.covered_variance_x_))
    print(f"ECA.fit levels (rows) {eca.level_sizes_}, loss evaluations per component and level "
          f"{eca.n_evaluations_.tolist()}")
    print(f"sine of the largest principal angle to the hidden subspace: ECA {sine:.4f}, reference {sine_ref:.4f}")
    not_lower = bool(np.all(eca.covered_variance_ >= covered_ref))
    print(f"\nspeed ratio reference / ECA.fit, CPU time: {ratio:.1f} (target >= 10)  {verdict(ratio >= 10)}"
          f"   [wall clock: {ratio_wall:.1f}]")
    print(f"covered variance of ECA.fit - reference, per component: "
          f"{' '.join(f'{d:+.2e}' for d in eca.covered_variance_ - covered_ref)}  {verdict(not_lower)}")
    if args.skip_ensemble:
        return

    # The reconstruction fits one ECA per emulator of a 5-member ensemble.
    Xe, Ye, Xe_fresh, Ye_fresh = correlated(2000, 210, n_fresh=2000)
    members, _, seconds = timed(lambda: [MLPEmulator(hidden_layer_sizes=(64, 64), max_iter=200, random_state=seed)
                                         .fit(Xe, Ye) for seed in range(5)])
    print(f"\nensemble use case: 5 emulators (seeds 0-4) on 2,000 x 210 correlated features (fit, not timed: "
          f"{seconds:.1f} s); fresh-row R2 " + " ".join(f"{m.score(Xe_fresh, Ye_fresh):.3f}" for m in members))
    fits, ensemble_cpu, ensemble_wall = timed(lambda: [ECA(member, n_components=3, random_state=0).fit(Xe, Ye)
                                                       for member in members])
    (_, covered_member_ref, _), member_ref_cpu, _ = timed(adam_reference, members[0], Xe, Ye, **REFERENCE)
    print(f"5 ECA fits: {ensemble_cpu:.2f} CPU s in all ({ensemble_cpu / 5:.3f} per fit; wall {ensemble_wall:.2f} s)")
    print("  covered variance with 3 components, training rows: "
          + " ".join(f"{fit.covered_variance_[-1]:.4f}" for fit in fits))
    print("  the same on 2,000 fresh rows:                      "
          + " ".join(f"{fit.score(Xe_fresh, Ye_fresh):.4f}" for fit in fits))
    print(f"member 1: Adam reference {member_ref_cpu:.2f} CPU s, covered variance {covered_member_ref[-1]:.4f} "
          f"(ECA.fit {fits[0].covered_variance_[-1]:.4f} in {ensemble_cpu / 5:.2f} s mean per fit); "
          f"ratio {member_ref_cpu / (ensemble_cpu / 5):.1f}")


if __name__ == "__main__":
    main()
