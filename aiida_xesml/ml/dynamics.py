"""Molecular-dynamics bookkeeping: continuation velocities, temperatures from pw.x output,
stitching segments into one trajectory, thermodynamic summaries and snapshot sampling.

Units: positions Å, cells Å, time fs, velocities Å/fs, energies eV, stress and pressure GPa,
temperature K, density g/cm³.
"""

from __future__ import annotations

import re

import numpy as np

from .validation import as_finite_array, check_positive

# Rydberg atomic units used by pw.x for time (dt) and velocities (ATOMIC_VELOCITIES card).
RY_TIME_FS = 4.8378e-2  # 1 Rydberg atomic unit of time = 2 hbar / E_h = 4.8378e-17 s
BOHR_ANGSTROM = 0.529177210903
KB_EV_PER_K = 8.617333262e-5
EV_PER_A3_IN_GPA = 160.21766208
AMU_G = 1.66053906660e-24
AMU_A2_PER_FS2_IN_EV = 103.642696  # 1 amu Å²/fs² in eV

_TEMPERATURE_RE = re.compile(r"^\s*temperature\s*=\s*([-+0-9.EeDd]+)\s*K", re.MULTILINE)
# vc-md (vcsmd) prints "Ekin = ... Ry    T =  292.7 K  Etot = ..." instead.
# "Entering Dynamics:    iteration =     1" and, on the next line, "time      =   0.0020 pico-seconds".
_TIME_RE = re.compile(r"Entering Dynamics:\s*iteration\s*=\s*(\d+)\s*\n\s*time\s*=\s*([-+0-9.EeDd]+)\s*pico-seconds")
_VC_TEMPERATURE_RE = re.compile(r"^\s*Ekin\s*=\s*\S+\s*Ry\s+T\s*=\s*([-+0-9.EeDd]+)\s*K", re.MULTILINE)


def _fortran_float(text: str) -> float:
    """A number as pw.x prints it, Fortran's D exponent included (``1.5D-03``)."""
    return float(text.replace("D", "E").replace("d", "e"))


def fs_to_ry_time(timestep_fs: float) -> float:
    """Convert a time step from fs to pw.x's Rydberg atomic units (the ``dt`` input)."""
    return check_positive(timestep_fs, "timestep_fs") / RY_TIME_FS


def velocities_to_ry_units(velocities) -> np.ndarray:
    """Convert velocities from Å/fs to pw.x's ``ATOMIC_VELOCITIES`` units (bohr per Rydberg time)."""
    return as_finite_array(velocities, "velocities", ndim=2) * (RY_TIME_FS / BOHR_ANGSTROM)


def unwrap_displacements(positions, cell) -> np.ndarray:
    """Return positions (k, n, 3) made continuous in time with the minimum-image convention.

    pw.x may keep or wrap atoms that cross the cell boundary; a jump by a lattice vector between
    two frames would otherwise look like an enormous velocity.
    """
    positions = as_finite_array(positions, "positions", ndim=3)
    cell = as_finite_array(cell, "cell", ndim=2)
    steps = np.diff(positions, axis=0)
    fractional = steps @ np.linalg.inv(cell)
    steps = (fractional - np.round(fractional)) @ cell
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)], axis=0)


def squared_displacements(positions, cell) -> np.ndarray:
    """Squared displacement (Å²) of every atom from the first frame, per frame: shape (k, n).

    Positions (k, n, 3) in Å in one fixed cell (3, 3) are first made continuous with
    :func:`unwrap_displacements`. Averaged over atoms, this is the mean squared displacement: a few
    Å² within a picosecond for a liquid, a fraction of an Å² for a solid.
    """
    unwrapped = unwrap_displacements(positions, cell)
    return np.sum((unwrapped - unwrapped[:1]) ** 2, axis=2)


def velocities_from_positions(positions, cell, timestep_fs: float, forces=None, masses_amu=None) -> np.ndarray:
    """Velocities (n_atoms, 3) in Å/fs at the LAST of ``positions`` (k >= 2 frames, Å).

    With the forces (eV/Å) and masses (amu) of the last frame, this is the velocity-Verlet identity
    v_k = (r_k - r_{k-1}) / dt + dt F_k / (2 m), which is what pw.x's Verlet integrator holds at that
    frame. Without them it falls back to the second-order backward difference
    (3 r_k - 4 r_{k-1} + r_{k-2}) / (2 dt) (three frames) or the first-order one (two frames).
    """
    dt = check_positive(timestep_fs, "timestep_fs")
    positions = unwrap_displacements(positions, cell)
    if positions.shape[0] < 2:
        raise ValueError(f"`positions` needs at least 2 frames to derive velocities; got {positions.shape[0]}")
    if forces is not None:
        forces = as_finite_array(forces, "forces", ndim=2)
        masses = as_finite_array(masses_amu, "masses_amu", ndim=1)
        acceleration = forces / masses[:, None] / AMU_A2_PER_FS2_IN_EV
        return (positions[-1] - positions[-2]) / dt + 0.5 * dt * acceleration
    if positions.shape[0] == 2:
        return (positions[1] - positions[0]) / dt
    r2, r1, r0 = positions[-3], positions[-2], positions[-1]
    return (3.0 * r0 - 4.0 * r1 + r2) / (2.0 * dt)


def kinetic_temperature(velocities, masses_amu, remove_com: bool = False) -> float:
    """Instantaneous temperature (K) of velocities (Å/fs) with masses (amu): 2 E_kin / (n_dof k_B).

    By default n_dof = 3N and nothing is removed. With ``remove_com`` the centre-of-mass velocity is
    removed and n_dof = 3N - 3: pw.x's ``md`` count when every atom moves (a 6-atom cell given
    velocities at exactly 600 K by the 3N count printed 720 K = 600 x 18/15).
    """
    velocities = as_finite_array(velocities, "velocities", ndim=2)
    masses = as_finite_array(masses_amu, "masses_amu", ndim=1)
    n_dof = 3 * len(masses)
    if remove_com:
        velocities = velocities - (masses[:, None] * velocities).sum(0) / masses.sum()
        n_dof -= 3
    kinetic_ev = 0.5 * np.sum(masses[:, None] * velocities**2) * AMU_A2_PER_FS2_IN_EV
    return float(2.0 * kinetic_ev / (n_dof * KB_EV_PER_K))


def maxwell_boltzmann_velocities(masses_amu, temperature_k: float, seed: int) -> np.ndarray:
    """Random starting velocities (n_atoms, 3) in Å/fs, drawn reproducibly from ``seed``.

    Each component is drawn from the Maxwell–Boltzmann distribution at ``temperature_k`` (K) for its
    atom's mass (amu); the centre-of-mass velocity is then removed and all velocities are scaled so
    that the temperature over 3N - 3 degrees of freedom (pw.x's count, ``kinetic_temperature(...,
    remove_com=True)``) is exactly ``temperature_k``. This is what pw.x's own start does, except that
    pw.x seeds its generator from the clock, so two identical runs start from different velocities.
    """
    masses = as_finite_array(masses_amu, "masses_amu", ndim=1)
    if np.any(masses <= 0):
        raise ValueError("`masses_amu` must all be > 0")
    temperature = float(temperature_k)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"`temperature_k` must be > 0; got {temperature_k}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0; got {seed!r}")
    rng = np.random.default_rng(int(seed))
    sigma = np.sqrt(KB_EV_PER_K * temperature / (masses * AMU_A2_PER_FS2_IN_EV))
    velocities = rng.normal(size=(len(masses), 3)) * sigma[:, None]
    velocities -= (masses[:, None] * velocities).sum(0) / masses.sum()
    return velocities * np.sqrt(temperature / kinetic_temperature(velocities, masses, remove_com=True))


def parse_md_temperatures(text: str) -> np.ndarray:
    """Temperatures (K) printed by pw.x after each MD step (``temperature = ... K`` lines; for
    vc-md the ``Ekin = ... Ry  T = ... K`` lines).

    The i-th value belongs to frame i of the segment's trajectory (frame 0 is the input geometry):
    pw.x prints the Verlet (central-difference) velocity of the current frame while moving past it.
    """
    matches = _TEMPERATURE_RE.findall(text) or _VC_TEMPERATURE_RE.findall(text)
    return np.asarray([_fortran_float(match) for match in matches], dtype=float)


def parse_md_times(text: str) -> tuple[np.ndarray, np.ndarray]:
    """pw.x's own MD clock: the iteration numbers and times (fs) of its ``Entering Dynamics`` blocks.

    pw.x prints ``iteration = i`` and ``time = t pico-seconds`` (4 decimals, so 0.1 fs) while moving
    the ions from frame i - 1 to frame i: t is the time of frame i of the run (frame 0 is the input
    geometry). A native restart continues both counters. vc-md (vcsmd) prints no such blocks.
    """
    matches = _TIME_RE.findall(text)
    iterations = np.asarray([int(i) for i, _ in matches], dtype=int)
    times_fs = np.asarray([_fortran_float(t) * 1000.0 for _, t in matches], dtype=float)
    return iterations, times_fs


def stitch_segments(segments: list[dict], n_kept: list[int]) -> dict[str, np.ndarray]:
    """Concatenate MD segments into one trajectory, keeping the first ``n_kept[i]`` frames of each.

    Each segment is a dict of per-frame arrays with equal first dimension (e.g. positions, cells,
    energy, forces, stress, temperature). A segment's kept frames end where the next one starts,
    so no frame is duplicated or lost at a seam. Keys missing from any segment are dropped.
    """
    if len(segments) != len(n_kept):
        raise ValueError(f"`n_kept` has {len(n_kept)} entries for {len(segments)} segments")
    if not segments:
        raise ValueError("`segments` is empty: nothing to stitch")
    keys = set(segments[0])
    for segment in segments[1:]:
        keys &= set(segment)
    stitched = {}
    for key in sorted(keys):
        parts = []
        for index, (segment, count) in enumerate(zip(segments, n_kept)):
            array = np.asarray(segment[key])
            if count > len(array):
                raise ValueError(
                    f"segment {index} has {len(array)} frames of `{key}` but {count} are to be kept"
                )
            parts.append(array[:count])
        stitched[key] = np.concatenate(parts, axis=0)
    return stitched


def pressure_from_stress(stress_gpa) -> np.ndarray:
    """Pressure (GPa) per frame from stress tensors (k, 3, 3) in GPa: P = trace / 3 (pw.x sign)."""
    stress = as_finite_array(stress_gpa, "stress_gpa", ndim=3)
    return np.trace(stress, axis1=1, axis2=2) / 3.0


def md_summary(cells, stress_gpa, temperature_k, masses_amu) -> dict:
    """Averages over an MD run: temperature (K), pressure (GPa), volume (Å³), density (g/cm³).

    ``pressure_static_gpa`` is the mean of trace(stress)/3 as pw.x reports it (electrons and ion
    interactions only); ``pressure_gpa`` adds the ideal-gas kinetic term N k_B T / V of the ions.
    """
    cells = as_finite_array(cells, "cells", ndim=3)
    temperature = as_finite_array(temperature_k, "temperature_k", ndim=1)
    masses = as_finite_array(masses_amu, "masses_amu", ndim=1)
    volumes = np.abs(np.linalg.det(cells))
    static = pressure_from_stress(stress_gpa)
    kinetic = len(masses) * KB_EV_PER_K * temperature / volumes * EV_PER_A3_IN_GPA
    return {
        "n_frames": int(len(volumes)),
        "temperature_mean_k": float(temperature.mean()),
        "temperature_std_k": float(temperature.std()),
        "pressure_static_gpa": float(static.mean()),
        "pressure_gpa": float((static + kinetic).mean()),
        "pressure_std_gpa": float((static + kinetic).std()),
        "volume_mean_a3": float(volumes.mean()),
        "density_g_cm3": float(masses.sum() * AMU_G / (volumes.mean() * 1e-24)),
    }


def pressure_correction_ratio(measured_gpa: float, target_gpa: float, bulk_modulus_gpa: float,
                              max_change: float = 0.1) -> float:
    """Volume ratio V_new / V that moves an MD's pressure from ``measured_gpa`` to ``target_gpa``.

    To first order P(V) = P − B ΔV / V, so V_new / V = 1 + (measured − target) / B with the bulk
    modulus B (GPa). The change is clipped to ±``max_change`` (10 % by default): a first guess of
    B can be far off, and a step that large would take the cell far from where the MD sampled it.
    """
    bulk = check_positive(bulk_modulus_gpa, "bulk_modulus_gpa")
    change = (float(measured_gpa) - float(target_gpa)) / bulk
    if not np.isfinite(change):
        raise ValueError(f"`measured_gpa` and `target_gpa` must be finite; got {measured_gpa}, {target_gpa}")
    limit = check_positive(max_change, "max_change")
    return float(1.0 + np.clip(change, -limit, limit))


def secant_bulk_modulus(volumes, pressures, default_gpa: float, bounds=(5.0, 1000.0)) -> float:
    """Bulk modulus (GPa) B = −V̄ ΔP / ΔV from the last two (volume Å³, pressure GPa) points of a
    cell's MD runs, or ``default_gpa`` when there are fewer than two or the estimate falls outside
    ``bounds`` (MD noise can make a small ΔV give any slope)."""
    volumes, pressures = np.asarray(volumes, float), np.asarray(pressures, float)
    if len(volumes) < 2 or volumes[-1] == volumes[-2]:
        return float(default_gpa)
    estimate = -0.5 * (volumes[-1] + volumes[-2]) * (pressures[-1] - pressures[-2]) / (volumes[-1] - volumes[-2])
    return float(estimate) if bounds[0] <= estimate <= bounds[1] else float(default_gpa)


def autocorrelation_time(series) -> float:
    """Integrated autocorrelation time (in frames, >= 1) of a 1-D series.

    Sums the normalized autocorrelation function up to its first non-positive value (a common,
    conservative truncation for short MD runs).
    """
    values = as_finite_array(series, "series", ndim=1)
    values = values - values.mean()
    variance = np.dot(values, values)
    if len(values) < 3 or variance == 0:
        return 1.0
    n = len(values)
    spectrum = np.fft.rfft(values, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n] / variance
    cut = np.argmax(acf <= 0) if np.any(acf <= 0) else n
    return float(max(1.0, 1.0 + 2.0 * acf[1:cut].sum()))


def sample_frames(n_frames: int, start: int, stride: int) -> np.ndarray:
    """Frame indices start, start+stride, ... below n_frames (the production-run snapshots)."""
    if start < 0 or start >= n_frames:
        raise ValueError(f"`start` must lie in [0, {n_frames}); got {start}")
    if stride < 1:
        raise ValueError(f"`stride` must be >= 1; got {stride}")
    return np.arange(start, n_frames, stride)


def choose_stride(energy, n_equilibration: int, stride: int | None = None) -> tuple[int, float]:
    """Snapshot spacing (frames) for the production part ``energy[n_equilibration:]``.

    With ``stride`` None or < 1, the spacing is the rounded-up integrated autocorrelation time of the
    potential energy, so that snapshots are roughly decorrelated. Returns (stride, autocorrelation
    time in frames).
    """
    energy = as_finite_array(energy, "energy", ndim=1)
    if not 0 <= n_equilibration < len(energy):
        raise ValueError(f"`n_equilibration` must lie in [0, {len(energy)}); got {n_equilibration}")
    tau = autocorrelation_time(energy[n_equilibration:])
    if stride is None or stride < 1:
        stride = int(np.ceil(tau))
    return int(stride), tau
