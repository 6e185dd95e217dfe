"""GeO2 structure builders and structural analysis (lengths in Å, densities in g/cm³).

Builders: the rutile-type (6-fold Ge) and α-quartz-type (4-fold Ge) crystals at experimental
geometry, supercells, rattled and strained copies, and a random GeO2 starting configuration for MD.
Analysis: density, Ge–O distances and coordination numbers over all periodic images (through
``ase.neighborlist.neighbor_list``, independent of the descriptor's own neighbour search).
"""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers
from ase.neighborlist import neighbor_list
from ase.spacegroup import crystal

from .validation import as_finite_array, check_positive

__all__ = [
    "AMU_PER_A3_IN_G_PER_CM3",
    "DEFAULT_MIN_DISTANCES",
    "rutile_geo2",
    "quartz_geo2",
    "supercell",
    "rattle_and_strain",
    "random_network",
    "density",
    "neighbour_distances",
    "ge_o_distances",
    "coordination_numbers",
    "first_shell_distance",
    "analyze",
]

#: 1 amu/Å³ in g/cm³ (1 amu = 1.66053906660e-24 g, 1 Å³ = 1e-24 cm³).
AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660
#: Default minimum distances (Å) of :func:`random_network`.
DEFAULT_MIN_DISTANCES = {("Ge", "O"): 1.6, ("O", "O"): 2.4, ("Ge", "Ge"): 2.8}
# random_network: candidate positions drawn at once per atom, and batches before giving up.
_CANDIDATES_PER_BATCH = 256
_BATCHES_PER_ATOM = 40
# random_network: each failed attempt scales all minimum distances by this, down to _MIN_SCALE.
_RELAX_FACTOR = 0.95
_MIN_SCALE = 0.7


def rutile_geo2(a: float = 4.3975, c: float = 2.8625, u: float = 0.306) -> Atoms:
    """Rutile-type GeO2 (space group 136, 6-fold Ge): 2 Ge + 4 O, experimental geometry.

    :param a: lattice parameter a in Å (default 4.3975).
    :param c: lattice parameter c in Å (default 2.8625).
    :param u: O Wyckoff parameter, O at (u, u, 0) (default 0.306).
    """
    a, c, u = check_positive(a, "a"), check_positive(c, "c"), check_positive(u, "u")
    return crystal(["Ge", "O"], [(0.0, 0.0, 0.0), (u, u, 0.0)], spacegroup=136,
                   cellpar=[a, a, c, 90, 90, 90])


def quartz_geo2(a: float = 4.987, c: float = 5.652, ge=(0.4513, 0.0, 2.0 / 3.0),
                o=(0.3969, 0.3021, 0.7576)) -> Atoms:
    """α-quartz-type GeO2 (space group 154, ASE setting, 4-fold Ge): 3 Ge + 6 O, Ge–O ≈ 1.74 Å.

    :param a: hexagonal lattice parameter a in Å (default 4.987).
    :param c: lattice parameter c in Å (default 5.652).
    :param ge: fractional Ge position (default (0.4513, 0, 2/3), the ASE setting of QE-NOTES.md).
    :param o: fractional O position (default (0.3969, 0.3021, 0.7576)).
    """
    a, c = check_positive(a, "a"), check_positive(c, "c")
    ge = tuple(as_finite_array(ge, "ge", ndim=1))
    o = tuple(as_finite_array(o, "o", ndim=1))
    return crystal(["Ge", "O"], [ge, o], spacegroup=154, cellpar=[a, a, c, 90, 90, 120])


def supercell(atoms: Atoms, repeats) -> Atoms:
    """``atoms`` repeated ``repeats`` times along the cell vectors (an int or 3 positive ints).

    The atoms of the original cell come first, then their copies (ASE's ``Atoms.repeat`` order).
    """
    atoms = _check_atoms(atoms)
    values = np.atleast_1d(np.asarray(repeats))
    if values.shape not in ((1,), (3,)) or not np.issubdtype(values.dtype, np.integer) or np.any(values < 1):
        raise ValueError(f"`repeats` must be a positive int or 3 positive ints; got {repeats!r}")
    return atoms.repeat(tuple(int(v) for v in np.broadcast_to(values, (3,))))


def rattle_and_strain(atoms: Atoms, rattle: float = 0.05, strain: float = 0.02, seed: int = 0) -> Atoms:
    """A copy with a random symmetric strain and Gaussian displacements.

    The strain tensor has independent entries uniform in [-strain, strain], symmetrized (so each
    component stays within ±strain); the cell becomes cell @ (1 + ε) and fractional coordinates are
    kept. Then every position gets an isotropic Gaussian displacement of standard deviation
    ``rattle`` Å per cartesian component.

    :param rattle: displacement standard deviation in Å (default 0.05; 0 allowed).
    :param strain: largest strain component, dimensionless (default 0.02; 0 allowed).
    :param seed: seed of ``numpy.random.default_rng``.
    """
    atoms = _check_atoms(atoms)
    rattle = _check_non_negative(rattle, "rattle")
    strain = _check_non_negative(strain, "strain")
    rng = np.random.default_rng(seed)
    random_tensor = rng.uniform(-strain, strain, size=(3, 3))
    deformation = np.eye(3) + 0.5 * (random_tensor + random_tensor.T)
    result = atoms.copy()
    # positions @ F keeps fractional coordinates and also works for clusters without a cell
    result.set_cell(np.asarray(atoms.cell.array) @ deformation, scale_atoms=False)
    result.positions = atoms.positions @ deformation + rng.normal(0.0, rattle, size=(len(atoms), 3))
    return result


def random_network(n_ge: int, density: float = 3.6, min_distances=None, seed: int = 0) -> Atoms:
    """A cubic periodic cell of ``n_ge`` GeO2 units at random positions, a starter for MD (not a glass).

    Atoms are placed one at a time at uniformly random positions that respect the minimum
    (minimum-image) distances to the atoms already placed; Ge first, then O. If the density makes
    this impossible, all minimum distances are scaled down by 5 % per attempt, down to 70 % of the
    request, with one RuntimeWarning; when even that fails a ValueError is raised. The distances
    actually used are in ``atoms.info['min_distances_A']``.

    :param n_ge: number of Ge atoms (the cell holds n_ge Ge and 2 n_ge O).
    :param density: mass density in g/cm³ (default 3.6, about glassy GeO2 at ambient pressure).
    :param min_distances: {(symbol, symbol): Å} overriding :data:`DEFAULT_MIN_DISTANCES`
        (Ge–O 1.6, O–O 2.4, Ge–Ge 2.8 Å); either key order is accepted.
    :param seed: seed of ``numpy.random.default_rng``.
    """
    if isinstance(n_ge, (bool, np.bool_)) or not isinstance(n_ge, (int, np.integer)) or n_ge < 1:
        raise ValueError(f"`n_ge` must be a positive integer; got {n_ge!r}")
    density = check_positive(density, "density")
    minimum = _pair_distance_table(min_distances)
    symbols = ["Ge"] * int(n_ge) + ["O"] * (2 * int(n_ge))
    mass = float(np.sum(atomic_masses[[atomic_numbers[s] for s in symbols]]))
    length = (mass * AMU_PER_A3_IN_G_PER_CM3 / density) ** (1.0 / 3.0)
    kinds = np.array([0] * int(n_ge) + [1] * (2 * int(n_ge)))  # 0: Ge, 1: O
    rng = np.random.default_rng(seed)
    n_attempts = int(np.floor(np.log(_MIN_SCALE) / np.log(_RELAX_FACTOR))) + 1
    for scale in _RELAX_FACTOR ** np.arange(n_attempts):
        positions = _place_randomly(kinds, minimum * scale, length, rng)
        if positions is not None:
            break
    else:
        raise ValueError(
            f"random_network could not place {n_ge} GeO2 units at `density` {density} g/cm^3 even with "
            f"`min_distances` scaled to {scale:.0%}; lower the density or the minimum distances"
        )
    if scale < 1.0:
        warnings.warn(f"random_network: the minimum distances cannot be met at {density} g/cm^3; "
                      f"relaxing them to {scale:.0%} of the request", RuntimeWarning, stacklevel=2)
    atoms = Atoms(symbols, positions=positions, cell=np.eye(3) * length, pbc=True)
    used = minimum * scale
    atoms.info["min_distances_A"] = {"Ge-Ge": float(used[0, 0]), "Ge-O": float(used[0, 1]),
                                     "O-O": float(used[1, 1])}
    return atoms


def density(atoms: Atoms) -> float:
    """Mass density of a periodic cell in g/cm³ (ASE's standard atomic masses)."""
    atoms = _check_atoms(atoms)
    if not np.all(atoms.pbc):
        raise ValueError("`atoms` must be periodic along all three axes to have a density")
    volume = abs(atoms.cell.volume)
    if volume <= 0:
        raise ValueError("`atoms` has a zero-volume cell")
    return float(np.sum(atoms.get_masses()) / volume * AMU_PER_A3_IN_G_PER_CM3)


def neighbour_distances(atoms: Atoms, cutoff: float = 2.3, center: str = "Ge", neighbour: str = "O"):
    """Every (centre, neighbour-image) pair closer than ``cutoff`` Å, over all periodic images.

    :returns: (center_index, distance): two aligned 1-D arrays, sorted by centre index then
        distance (Å).
    """
    atoms = _check_atoms(atoms)
    cutoff = check_positive(cutoff, "cutoff")
    z_center, z_neighbour = _number(center, "center"), _number(neighbour, "neighbour")
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    keep = (atoms.numbers[i] == z_center) & (atoms.numbers[j] == z_neighbour)
    i, d = i[keep], d[keep]
    order = np.lexsort((d, i))
    return i[order], d[order]


def ge_o_distances(atoms: Atoms, cutoff: float = 2.3) -> np.ndarray:
    """All Ge–O distances (Å) shorter than ``cutoff`` Å, over all images, sorted by Ge index then distance."""
    return neighbour_distances(atoms, cutoff, "Ge", "O")[1]


def coordination_numbers(atoms: Atoms, cutoff: float = 2.3, center: str = "Ge", neighbour: str = "O") -> np.ndarray:
    """Number of ``neighbour`` atoms (all images) closer than ``cutoff`` Å to each ``center`` atom.

    :returns: int array, one count per ``center`` atom in index order.
    """
    atoms = _check_atoms(atoms)
    centers = np.flatnonzero(atoms.numbers == _number(center, "center"))
    if len(centers) == 0:
        raise ValueError(f"no atom of `center` {center!r} in `atoms`")
    index, _ = neighbour_distances(atoms, cutoff, center, neighbour)
    return np.bincount(index, minlength=len(atoms))[centers].astype(int)


def first_shell_distance(atoms: Atoms, cutoff: float = 2.3, center: str = "Ge", neighbour: str = "O") -> float:
    """Mean ``center``–``neighbour`` distance (Å) over all pairs closer than ``cutoff`` Å."""
    _, distances = neighbour_distances(atoms, cutoff, center, neighbour)
    if len(distances) == 0:
        raise ValueError(f"no {center}-{neighbour} pair closer than `cutoff` = {cutoff} Å")
    return float(np.mean(distances))


def analyze(atoms: Atoms, cutoff: float = 2.3) -> dict:
    """Structural summary with plain Python values (storable as an AiiDA Dict / JSON).

    :returns: n_atoms, n_ge, volume_A3, density_g_cm3, mean_ge_o_A (mean Ge–O distance within
        ``cutoff`` Å; None when there is no such pair), cn_mean (O within ``cutoff`` of Ge),
        cn_histogram {str(cn): count of Ge} (string keys, as AiiDA and JSON require).
    """
    atoms = _check_atoms(atoms)
    cn = coordination_numbers(atoms, cutoff, "Ge", "O")
    _, distances = neighbour_distances(atoms, cutoff, "Ge", "O")
    values, counts = np.unique(cn, return_counts=True)
    return {
        "n_atoms": len(atoms),
        "n_ge": int(len(cn)),
        "volume_A3": float(abs(atoms.cell.volume)),
        "density_g_cm3": density(atoms),
        "mean_ge_o_A": float(np.mean(distances)) if len(distances) else None,
        "cn_mean": float(np.mean(cn)),
        "cn_histogram": {str(int(v)): int(n) for v, n in zip(values, counts)},
    }


# --- internals ------------------------------------------------------------------------------------


def _check_atoms(atoms) -> Atoms:
    if not isinstance(atoms, Atoms):
        raise ValueError(f"`atoms` must be an ase.Atoms; got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("`atoms` holds no atoms")
    return atoms


def _check_non_negative(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a number >= 0; got {value!r}") from exc
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a number >= 0; got {value!r}")
    return value


def _number(symbol, name: str) -> int:
    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise ValueError(f"`{name}` must be a chemical symbol such as 'Ge' or 'O'; got {symbol!r}")
    return atomic_numbers[symbol]


def _pair_distance_table(min_distances) -> np.ndarray:
    """2x2 symmetric table of minimum distances (Å), index 0 = Ge, 1 = O; user values override."""
    index = {"Ge": 0, "O": 1}
    table = np.zeros((2, 2))
    for (a, b), value in DEFAULT_MIN_DISTANCES.items():
        table[index[a], index[b]] = table[index[b], index[a]] = value
    if min_distances is None:
        return table
    if not isinstance(min_distances, dict):
        raise ValueError(f"`min_distances` must be a dict {{(symbol, symbol): Å}}; got {min_distances!r}")
    for key, value in min_distances.items():
        if not isinstance(key, (tuple, list)) or len(key) != 2 or not set(key) <= set(index):
            raise ValueError(f"`min_distances` keys must be pairs of 'Ge'/'O' such as ('Ge', 'O'); got {key!r}")
        a, b = key
        table[index[a], index[b]] = table[index[b], index[a]] = _check_non_negative(
            value, f"min_distances[{key!r}]")
    return table


def _place_randomly(kinds, minimum, length, rng):
    """Random sequential placement in a cube of side ``length``; None when an atom finds no room."""
    if length < np.max(np.diag(minimum)):  # an atom would be too close to its own images
        return None
    positions = np.empty((len(kinds), 3))
    for atom, kind in enumerate(kinds):
        required = minimum[kind, kinds[:atom]]
        for _ in range(_BATCHES_PER_ATOM):
            trial = rng.uniform(0.0, length, size=(_CANDIDATES_PER_BATCH, 3))
            if atom == 0:
                positions[0] = trial[0]
                break
            delta = trial[:, None, :] - positions[None, :atom, :]
            delta -= length * np.round(delta / length)
            ok = np.all(np.einsum("tax,tax->ta", delta, delta) >= required**2, axis=1)
            if ok.any():
                positions[atom] = trial[np.argmax(ok)]
                break
        else:
            return None
    return positions
