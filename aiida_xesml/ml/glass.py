"""Structure of a glass model: pair distributions, bond angles and a test for Bragg-like order.

Lengths in Å, wave vectors in Å⁻¹, angles in degrees. Everything works on a periodic
``ase.Atoms`` cell over all periodic images (``ase.neighborlist.neighbor_list``), independent of
the descriptor's own neighbour search.

A periodic model of a glass is a crystal with a large, disordered unit cell. Two limits follow:
pair distributions are meaningful only up to half the cell's smallest width
(:func:`half_cell_width`), and the test for long-range order looks at the structure factor on the
cell's own reciprocal lattice (:func:`max_structure_factor`), where a crystal shows Bragg peaks.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from ase.neighborlist import neighbor_list

from .structures import analyze, coordination_numbers, neighbour_distances
from .validation import check_positive

__all__ = ["half_cell_width", "pair_distribution", "bond_angles", "max_structure_factor", "glass_analysis"]


def half_cell_width(atoms: Atoms) -> float:
    """Half the smallest distance between opposite faces of the cell (Å): beyond it an atom starts to
    see its own periodic images, so a pair distribution shows the model's period, not the material's."""
    atoms = _check_periodic(atoms)
    cell = np.asarray(atoms.cell.array)
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return float(min(widths) / 2.0)


def pair_distribution(atoms: Atoms, r_max: float | None = None, bin_width: float = 0.05):
    """Partial and total pair distribution functions g(r).

    g_ab(r) = V n_ab(r) / (N_a (N_b − δ_ab) 4π r² Δr), with n_ab(r) the number of (a atom, b atom
    image) pairs in the shell [r, r + Δr), so that g → 1 for atoms at random positions. The total
    g(r) is the same over all atoms regardless of species.

    :param r_max: largest r in Å; default :func:`half_cell_width`.
    :param bin_width: Δr in Å (default 0.05).
    :returns: (r, g): bin centres (Å) and {"Ge-Ge": ..., "Ge-O": ..., "O-O": ..., "total": ...}
        (one key per unordered species pair present, heavier species first).
    """
    atoms = _check_periodic(atoms)
    r_max = half_cell_width(atoms) if r_max is None else check_positive(r_max, "r_max")
    bin_width = check_positive(bin_width, "bin_width")
    edges = np.arange(0.0, r_max + 0.5 * bin_width, bin_width)
    if len(edges) < 2:
        raise ValueError(f"`r_max` ({r_max} Å) must be at least `bin_width` ({bin_width} Å)")
    shell = 4.0 * np.pi / 3.0 * np.diff(edges**3)
    volume = abs(atoms.cell.volume)
    i, j, d = neighbor_list("ijd", atoms, float(edges[-1]))
    symbols = np.asarray(atoms.get_chemical_symbols())
    species = sorted(set(symbols), key=lambda symbol: -atomic_numbers[symbol])
    g = {}
    for index, a in enumerate(species):
        for b in species[index:]:
            n_a, n_b = int(np.sum(symbols == a)), int(np.sum(symbols == b))
            if a == b and n_a < 2:
                continue
            counts, _ = np.histogram(d[(symbols[i] == a) & (symbols[j] == b)], bins=edges)
            g[f"{a}-{b}"] = volume * counts / (n_a * (n_b - (a == b)) * shell)
    counts, _ = np.histogram(d, bins=edges)
    g["total"] = volume * counts / (len(atoms) * (len(atoms) - 1) * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


def bond_angles(atoms: Atoms, center: str = "Ge", neighbour: str = "O", cutoff: float = 2.3) -> np.ndarray:
    """Every neighbour–centre–neighbour angle (degrees) at each ``center`` atom, over the ``neighbour``
    atoms (all periodic images) closer than ``cutoff`` Å; each pair of neighbours counts once.
    O–Ge–O by default; Ge–O–Ge with ``center="O", neighbour="Ge"``."""
    atoms = _check_periodic(atoms)
    cutoff = check_positive(cutoff, "cutoff")
    for value, name in ((center, "center"), (neighbour, "neighbour")):
        if value not in atomic_numbers or value == "X":
            raise ValueError(f"`{name}` must be a chemical symbol such as 'Ge' or 'O'; got {value!r}")
    i, j, vectors = neighbor_list("ijD", atoms, cutoff)
    keep = (atoms.numbers[i] == atomic_numbers[center]) & (atoms.numbers[j] == atomic_numbers[neighbour])
    i, vectors = i[keep], vectors[keep]
    angles = []
    for atom in np.unique(i):
        bonds = vectors[i == atom]
        unit = bonds / np.linalg.norm(bonds, axis=1)[:, None]
        first, second = np.triu_indices(len(bonds), k=1)
        cosine = np.clip(np.sum(unit[first] * unit[second], axis=1), -1.0, 1.0)
        angles.append(np.degrees(np.arccos(cosine)))
    return np.concatenate(angles) if angles else np.zeros(0)


def max_structure_factor(atoms: Atoms, q_max: float = 8.0) -> tuple[float, float]:
    """The largest S(q)/N over the cell's reciprocal-lattice vectors q with 0 < ``|q|`` ≤ ``q_max`` Å⁻¹.

    S(q) = ``|Σ_j exp(i q·r_j)|²`` / N (all atoms weighted alike). A crystal cell has Bragg peaks where
    S(q) is of order N, so S/N is of order 1 (0.3–1 for GeO2 polymorphs); atoms at random positions
    give S(q) of order 1, so S/N of order 1/N. A glass model should look like the latter.

    :returns: (largest S(q)/N, the length of that q in Å⁻¹).
    """
    atoms = _check_periodic(atoms)
    q_max = check_positive(q_max, "q_max")
    reciprocal = 2.0 * np.pi * np.asarray(atoms.cell.reciprocal())
    # q = Σ n_i b_i has n_i = q·a_i / 2π, so |n_i| <= q_max |a_i| / 2π also in a sheared cell
    limits = [int(np.ceil(q_max * np.linalg.norm(a) / (2.0 * np.pi))) for a in atoms.cell.array]
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in limits], indexing="ij"), axis=-1).reshape(-1, 3)
    q = grid @ reciprocal
    norms = np.linalg.norm(q, axis=1)
    keep = (norms > 1e-9) & (norms <= q_max)
    if not np.any(keep):
        raise ValueError(f"no reciprocal-lattice vector of the cell has 0 < |q| <= `q_max` ({q_max} Å⁻¹)")
    q, norms = q[keep], norms[keep]
    s = np.abs(np.exp(1j * q @ atoms.positions.T).sum(axis=1)) ** 2 / len(atoms)
    best = int(np.argmax(s))
    return float(s[best] / len(atoms)), float(norms[best])


def glass_analysis(atoms: Atoms, cutoff: float = 2.3, bin_width: float = 0.05, angle_bin_deg: float = 2.0,
                   q_max: float = 8.0) -> tuple[dict, dict]:
    """Structure of a GeO2 cell as plain scalars and distributions.

    :param cutoff: Ge–O bond cutoff (Å) of the CN and the bond angles.
    :returns: (scalars, arrays). ``scalars``: everything of :func:`~aiida_xesml.ml.structures.analyze`,
        plus ``cn_std``, ``ge_o_std_A`` (Å), ``o_ge_o_mean_deg``/``_std_deg``, ``ge_o_ge_mean_deg``/``_std_deg``,
        ``max_structure_factor_per_atom`` and ``max_structure_factor_q_inv_A`` (:func:`max_structure_factor`),
        ``pdf_r_max_A``. ``arrays``: ``pdf_r`` (Å), ``pdf_Ge_O`` etc. (:func:`pair_distribution`),
        ``ge_o_distances`` (Å), ``cn`` (per Ge), ``angle_bins_deg`` (bin edges), ``o_ge_o_histogram`` and
        ``ge_o_ge_histogram`` (counts per bin).
    """
    scalars = analyze(atoms, cutoff)
    cn = coordination_numbers(atoms, cutoff, "Ge", "O")
    _, distances = neighbour_distances(atoms, cutoff, "Ge", "O")
    o_ge_o = bond_angles(atoms, "Ge", "O", cutoff)
    ge_o_ge = bond_angles(atoms, "O", "Ge", cutoff)
    r, g = pair_distribution(atoms, bin_width=bin_width)
    s_max, q_peak = max_structure_factor(atoms, q_max)
    edges = np.arange(0.0, 180.0 + 0.5 * angle_bin_deg, check_positive(angle_bin_deg, "angle_bin_deg"))

    def mean_std(values):
        return (float(np.mean(values)), float(np.std(values))) if len(values) else (None, None)

    scalars.update({
        "cn_std": float(np.std(cn)),
        "ge_o_std_A": mean_std(distances)[1],
        "o_ge_o_mean_deg": mean_std(o_ge_o)[0], "o_ge_o_std_deg": mean_std(o_ge_o)[1],
        "ge_o_ge_mean_deg": mean_std(ge_o_ge)[0], "ge_o_ge_std_deg": mean_std(ge_o_ge)[1],
        "max_structure_factor_per_atom": s_max, "max_structure_factor_q_inv_A": q_peak,
        "pdf_r_max_A": float(r[-1] + 0.5 * bin_width),
    })
    arrays = {"pdf_r": r, **{f"pdf_{name.replace('-', '_')}": values for name, values in g.items()},
              "ge_o_distances": distances, "cn": cn, "angle_bins_deg": edges,
              "o_ge_o_histogram": np.histogram(o_ge_o, bins=edges)[0],
              "ge_o_ge_histogram": np.histogram(ge_o_ge, bins=edges)[0]}
    return scalars, arrays


def _check_periodic(atoms) -> Atoms:
    if not isinstance(atoms, Atoms) or len(atoms) < 2:
        raise ValueError(f"`atoms` must be an ase.Atoms with at least 2 atoms; got {atoms!r}")
    if not np.all(atoms.pbc) or abs(atoms.cell.volume) <= 0:
        raise ValueError("`atoms` must be periodic along all three axes, with a cell of non-zero volume")
    return atoms
