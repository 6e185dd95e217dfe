"""The local Coulomb matrix of an emitting site (SCIENCE.md §4).

For a centre s, take s and its ``n_atoms - 1`` nearest atoms across all periodic images (in a small
cell one atom can appear several times, as different images; the centre's own images count too).
With positions in Å::

    M_ii = 0.5 * Z_i**2.4
    M_ij = Z_i * Z_j / |R_i - R_j|          (in 1/Å, Z dimensionless)

The features are the upper triangle including the diagonal, row-major: ``n_atoms*(n_atoms+1)//2``
values. Row 0 holds ``Z_0 Z_j / r_0j``, which makes the distances from the centre recoverable
(:mod:`aiida_xesml.ml.reconstruct`).

Two orderings of the slots (:data:`ORDERINGS`):

- ``"distance"`` (the published one, the default of the functions here): the centre first, then
  all neighbours by increasing distance from the centre, ties broken by atomic number, then atom
  index, then image offset (lexicographic). A slot's species varies from site to site.
- ``"species"`` (the default of the analysis, :func:`check_descriptor_settings`): the centre first,
  then, for each ``(symbol, count)`` of ``species_counts`` in turn, the ``count`` nearest images of
  that species by increasing distance (ties: atom index, then image offset). Every slot has a fixed
  species (:func:`slot_atomic_numbers`): with the default :func:`default_species_counts`, slots
  1-12 are the 12 nearest O and slots 13-19 the 7 nearest Ge for N = 20. The centre's own images
  count among its species; atoms of a species not in ``species_counts`` are left out.

Distances that differ by at most :data:`TIE_TOLERANCE` (1e-8 Å) count as equal for the ordering, so
that symmetry-equivalent neighbours of a crystal, whose computed distances differ by rounding noise,
are ordered by the tie rules and the order is reproducible. Ties are found from gaps: a centre's
neighbours (of one species, in the species ordering) sorted by distance stay in one tie group while
consecutive distances differ by at most the tolerance (unlike rounding to a grid, this never splits
two distances 1e-15 Å apart).

The image offset ``S`` of a neighbour is the integer lattice shift applied to its atom: the
neighbour sits at ``positions[index] + S @ cell``.

Caveat of the tie rule: the index and offset keys are not physical, so symmetry-equivalent sites
share row 0 and the diagonal but may order equivalent neighbours differently, and the off-diagonal
entries then differ; the same holds for one site after re-indexing atoms, building a supercell or
wrapping positions (which changes offsets) when its neighbours have exact ties. Tie-free (e.g.
thermally disordered) structures are invariant under all of these.

Implementation: one vectorized image search per structure, and structures of equal size and pbc
are searched together, in batches of about :data:`BATCH_SITES` centres (no Python loop over sites
or structures in the hot path; the batches drive the optional progress bar). Lattice images
are enumerated within a cutoff from the cell heights (the distances between lattice planes), which
provably includes every image within the cutoff; the cutoff starts from the number density and is
enlarged, for the centres that need it, until the last neighbour (of every species, in the species
ordering) is provably inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .progress import progress
from .validation import as_finite_array, check_n_atoms

__all__ = [
    "ORDERINGS",
    "DESCRIPTOR_SETTINGS_DEFAULTS",
    "TIE_TOLERANCE",
    "OVERLAP_TOLERANCE",
    "BATCH_SITES",
    "NeighbourShells",
    "neighbour_shells",
    "coulomb_features",
    "local_coulomb_matrix",
    "local_coulomb_matrices",
    "default_species_counts",
    "slot_atomic_numbers",
    "check_descriptor_settings",
    "feature_blocks",
    "feature_names",
    "n_features",
    "LocalCoulombMatrix",
]

#: Slot orderings: ``"distance"`` (published, species mixed) and ``"species"`` (a fixed species per slot).
ORDERINGS = ("distance", "species")
#: Defaults of :func:`check_descriptor_settings` (the analysis): the species ordering, SCIENCE.md §4.
DESCRIPTOR_SETTINGS_DEFAULTS = {"n_atoms": 20, "species": "Ge", "ordering": "species", "species_counts": None}
#: Distances (Å) that differ by at most this much are ties for the neighbour order.
TIE_TOLERANCE = 1e-8
#: Two atoms (or images) closer than this (Å) overlap: a ValueError, since M_ij would be infinite.
OVERLAP_TOLERANCE = 1e-6
#: Diagonal exponent of the Coulomb matrix.
DIAGONAL_EXPONENT = 2.4
# Cap on the (centre, atom, image) candidates held at once (~50 MB), for large cells and batches.
_MAX_CANDIDATES = 2_000_000
# First cutoff = this factor times the radius of a sphere holding n_atoms atoms on average; the
# cutoff grows by _CUTOFF_GROWTH for the centres whose n_atoms-th atom lies beyond it.
_CUTOFF_MARGIN = 1.2
#: Centres per vectorized pass of :func:`local_coulomb_matrices` (one step of its progress bar).
BATCH_SITES = 4096
_CUTOFF_GROWTH = 1.3
# Share of the neighbour slots that default_species_counts gives to O, as a fraction 3/5.
_O_SHARE = (3, 5)


@dataclass(frozen=True)
class NeighbourShells:
    """The ordered neighbourhoods of some centres: slot 0 is the centre, then the neighbours.

    Padding slots (a non-periodic cluster with fewer than ``n_atoms`` atoms, or in the species
    ordering fewer atoms of a slot's species) have index -1, atomic number 0, offset (0, 0, 0),
    distance ``inf`` and vector (0, 0, 0).

    :ivar centers: (n_centers,) atom index of each centre.
    :ivar indices: (n_centers, n_atoms) atom index of each slot.
    :ivar offsets: (n_centers, n_atoms, 3) integer lattice shift of each slot's image.
    :ivar numbers: (n_centers, n_atoms) atomic number of each slot.
    :ivar distances: (n_centers, n_atoms) distance from the centre in Å (0 for the centre).
    :ivar vectors: (n_centers, n_atoms, 3) cartesian position relative to the centre, in Å.
    """

    centers: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray
    numbers: np.ndarray
    distances: np.ndarray
    vectors: np.ndarray


def n_features(n_atoms: int) -> int:
    """Number of features of an ``n_atoms`` local Coulomb matrix: n_atoms*(n_atoms+1)//2."""
    n_atoms = check_n_atoms(n_atoms)
    return n_atoms * (n_atoms + 1) // 2


def feature_names(n_atoms: int) -> np.ndarray:
    """Names ``M_i_j`` (i <= j) of the features, in feature order (upper triangle, row-major)."""
    rows, cols = _triangle(check_n_atoms(n_atoms))
    return np.array([f"M_{i}_{j}" for i, j in zip(rows, cols)], dtype=object)


def default_species_counts(n_atoms: int) -> tuple[tuple[str, int], ...]:
    """Default slots per species of the species ordering: ``ceil(0.6 (n_atoms - 1))`` O, then the rest Ge.

    12 O + 7 Ge for N = 20, 6 O + 3 Ge for N = 10. The O share covers a 6-fold first shell and the
    second O shell; a species with no slot left (N <= 3) is omitted.

    :param n_atoms: atoms per matrix, centre included (>= 2).
    :returns: ``(("O", n_o), ("Ge", n_ge))``, counts summing to ``n_atoms - 1``.
    """
    n_neighbours = check_n_atoms(n_atoms) - 1
    n_o = -(-_O_SHARE[0] * n_neighbours // _O_SHARE[1])  # integer ceil(0.6 * n), no float rounding
    counts = (("O", n_o), ("Ge", n_neighbours - n_o))
    return tuple(pair for pair in counts if pair[1] > 0)


def slot_atomic_numbers(n_atoms: int, species: str = "Ge", ordering: str = "species", species_counts=None):
    """The atomic number of every slot, slot 0 the centre, or None when the slots' species vary.

    Row 0 of a species-ordered matrix then gives the distances from the centre:
    ``r_0j = Z_0 Z_j / M_0j`` (Å) with ``Z_j = slot_atomic_numbers(...)[j]``.

    :param n_atoms: atoms per matrix, centre included (>= 2).
    :param species: chemical symbol of the centre (default "Ge").
    :param ordering: one of :data:`ORDERINGS` (default "species").
    :param species_counts: ``(symbol, count)`` pairs in slot order (or an ordered dict); None means
        :func:`default_species_counts`. Must be None for ``ordering="distance"``.
    :returns: (n_atoms,) int array for ``ordering="species"``; None for ``ordering="distance"``.
    """
    n_atoms = check_n_atoms(n_atoms)
    z_center = atomic_numbers[_check_species(species)]
    slots = _slots(n_atoms, ordering, species_counts)
    if slots.kinds is None:
        return None
    return np.concatenate([[z_center], np.repeat(slots.kinds, slots.limits)]).astype(np.int64)


def check_descriptor_settings(settings, name: str = "settings") -> dict:
    """Validate and complete descriptor settings: the one home of the descriptor's parameter rules.

    Keys (a missing key or a None value takes the default): ``n_atoms`` (N, atoms per matrix,
    centre included, default 20), ``species`` (the emitting element, default "Ge"), ``ordering``
    (one of :data:`ORDERINGS`, default "species", SCIENCE.md §4) and ``species_counts`` (the
    species ordering's ``(symbol, count)`` pairs in slot order, summing to N - 1; default
    :func:`default_species_counts`; must be absent or None for ``ordering="distance"``).

    Note that the descriptor *functions* default to ``ordering="distance"`` (the published
    descriptor), while these settings, the analysis's, default to ``"species"``.

    :param settings: a dict (or None for all defaults).
    :param name: how messages name the settings (e.g. ``"parameters"`` gives ``parameters['n_atoms']``).
    :returns: a new dict with all four keys; ``species_counts`` is a list of ``[symbol, count]``
        lists (JSON-storable), or None for the distance ordering.
    :raises ValueError: naming the key: an unknown key, or a bad value.
    """
    settings = {} if settings is None else settings
    if not isinstance(settings, Mapping):
        raise ValueError(f"`{name}` must be a dict with keys {sorted(DESCRIPTOR_SETTINGS_DEFAULTS)}; "
                         f"got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(DESCRIPTOR_SETTINGS_DEFAULTS), key=str)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in `{name}`; the descriptor settings are "
                         f"{sorted(DESCRIPTOR_SETTINGS_DEFAULTS)}")
    value = {key: (default if settings.get(key) is None else settings[key])
             for key, default in DESCRIPTOR_SETTINGS_DEFAULTS.items()}
    label = {key: f"{name}['{key}']" for key in value}
    n_atoms = check_n_atoms(value["n_atoms"], label["n_atoms"])
    species = _check_species(value["species"], label["species"])
    slots = _slots(n_atoms, value["ordering"], value["species_counts"], label["ordering"], label["species_counts"])
    counts = None if slots.kinds is None else [[chemical_symbols[z], int(c)] for z, c in zip(slots.kinds, slots.limits)]
    return {"n_atoms": n_atoms, "species": species, "ordering": value["ordering"], "species_counts": counts}


def feature_blocks(n_atoms: int, ordering: str, species_counts=None) -> dict[str, np.ndarray]:
    """Named column-index sets of the feature vector, the candidate inputs of the emulator.

    - ``"full"``: every column, ``n_atoms*(n_atoms+1)//2``;
    - ``"row0"``: the centre's row without the constant ``M_00``: ``M_0j`` for j = 1..N-1 (N - 1
      columns, the distances from the centre);
    - ``"center_o"`` (species ordering with O slots only): the upper triangle, diagonal included,
      over the centre and the O slots (the first O shells and their geometry).

    :param n_atoms: atoms per matrix, centre included (>= 2).
    :param ordering: one of :data:`ORDERINGS`.
    :param species_counts: as for :func:`local_coulomb_matrix` (None: the default of the ordering).
    :returns: dict of name -> sorted int arrays of column indices into the feature vector.
    """
    n_atoms = check_n_atoms(n_atoms)
    slots = _slots(n_atoms, ordering, species_counts)
    rows, cols = _triangle(n_atoms)
    blocks = {"full": np.arange(len(rows)), "row0": np.flatnonzero((rows == 0) & (cols > 0))}
    if slots.kinds is not None and atomic_numbers["O"] in slots.kinds:
        slot_z = np.concatenate([[0], np.repeat(slots.kinds, slots.limits)])
        chosen = (np.arange(n_atoms) == 0) | (slot_z == atomic_numbers["O"])
        blocks["center_o"] = np.flatnonzero(chosen[rows] & chosen[cols])
    return blocks


def neighbour_shells(atoms, centers=None, n_atoms: int = 20, species: str = "Ge", ordering: str = "distance",
                     species_counts=None) -> NeighbourShells:
    """Each centre and its ``n_atoms - 1`` nearest atoms over all periodic images, in descriptor order.

    :param atoms: an ``ase.Atoms``; positions in Å. Periodic along the axes where ``atoms.pbc`` is
        True (any cell shape, mixed pbc allowed); a fully non-periodic structure is a cluster and all
        its atoms are used, padded when there are fewer than ``n_atoms`` (or, in the species
        ordering, fewer of a slot's species).
    :param centers: atom indices of the centres; None means every atom whose symbol is ``species``,
        in index order.
    :param n_atoms: atoms per neighbourhood, the centre included (>= 2).
    :param species: chemical symbol of the centres when ``centers`` is None.
    :param ordering: one of :data:`ORDERINGS` (default "distance", the published ordering).
    :param species_counts: for ``ordering="species"``: ``(symbol, count)`` pairs in slot order (or an
        ordered dict), counts summing to ``n_atoms - 1``; None means :func:`default_species_counts`.
        Must be None for ``ordering="distance"``.
    :returns: a :class:`NeighbourShells`.
    :raises ValueError: bad arguments, a singular periodic cell, a periodic structure without an atom
        of a species of ``species_counts``, or an atom (image) closer than :data:`OVERLAP_TOLERANCE`
        Å to a centre (:func:`local_coulomb_matrix` also checks every pair inside the neighbourhood).
    """
    atoms = _check_atoms(atoms)
    n_atoms = check_n_atoms(n_atoms)
    slots = _slots(n_atoms, ordering, species_counts)
    center_index = _resolve_centers(atoms, centers, species)
    group = _Group.of([atoms], ["`atoms`"])
    return group.shells(np.zeros(len(center_index), dtype=np.int64), center_index, n_atoms, slots)


def coulomb_features(numbers, vectors) -> np.ndarray:
    """Local Coulomb matrix features of stacked neighbourhoods.

    :param numbers: (n, n_atoms) atomic numbers; 0 marks a padding slot (its row and column are 0).
    :param vectors: (n, n_atoms, 3) positions in Å (any origin; slot 0 is the centre).
    :returns: (n, n_atoms*(n_atoms+1)//2) upper triangle incl. diagonal, row-major; diagonal
        0.5 Z**2.4, off-diagonal ``Z_i Z_j / |R_i - R_j|`` in 1/Å.
    :raises ValueError: when two non-padding slots are closer than :data:`OVERLAP_TOLERANCE` Å.
    """
    numbers = as_finite_array(numbers, "numbers", ndim=2)
    vectors = as_finite_array(vectors, "vectors", ndim=3)
    if vectors.shape != numbers.shape + (3,) or np.any(numbers < 0):
        raise ValueError(f"`numbers` must be (n, n_atoms) atomic numbers >= 0 and `vectors` (n, n_atoms, 3); "
                         f"got {numbers.shape} and {vectors.shape}")
    features, overlap = _coulomb_features(numbers, vectors)
    if overlap is not None:
        raise ValueError(f"`vectors` of sample {overlap[0]} has slots {overlap[1]} and {overlap[2]} closer "
                         f"than {OVERLAP_TOLERANCE} Å")
    return features


def local_coulomb_matrix(atoms, centers=None, n_atoms: int = 20, species: str = "Ge", ordering: str = "distance",
                         species_counts=None) -> np.ndarray:
    """Local Coulomb matrix features of sites of one structure (SCIENCE.md §4).

    :param atoms: an ``ase.Atoms`` (positions in Å); periodic along its ``pbc`` axes, any cell
        shape; a non-periodic structure is a cluster, zero-padded below ``n_atoms`` atoms (or, in
        the species ordering, below a species' count).
    :param centers: atom indices of the centres; None means every atom whose symbol is ``species``,
        in index order.
    :param n_atoms: atoms per matrix, centre included (default 20 -> 210 features).
    :param species: chemical symbol of the centres when ``centers`` is None (default "Ge").
    :param ordering: ``"distance"`` (default; the published mixed ordering, its output unchanged) or
        ``"species"`` (the centre, then its nearest atoms species by species, SCIENCE.md §4).
    :param species_counts: for ``ordering="species"``: ``(symbol, count)`` pairs in slot order (or an
        ordered dict), counts summing to ``n_atoms - 1``; None means :func:`default_species_counts`
        (12 O + 7 Ge for N = 20). Must be None for ``ordering="distance"``.
    :returns: (n_centers, n_atoms*(n_atoms+1)//2) features: upper triangle incl. diagonal,
        row-major; ``M_ii = 0.5 Z_i**2.4``, ``M_ij = Z_i Z_j / |R_i - R_j|`` with R in Å.
    :raises ValueError: when ``atoms`` is not an ase.Atoms, no atom is of ``species``, ``n_atoms``
        < 2, a centre index is out of range, ``ordering`` or ``species_counts`` is bad, or atoms
        overlap.
    """
    shells = neighbour_shells(atoms, centers=centers, n_atoms=n_atoms, species=species, ordering=ordering,
                              species_counts=species_counts)
    return _features_of(shells, np.zeros(len(shells.centers), dtype=np.int64), ["`atoms`"])


def local_coulomb_matrices(structures, n_atoms: int = 20, species: str = "Ge", verbose: bool = False,
                           ordering: str = "distance", species_counts=None) -> np.ndarray:
    """Features of every ``species`` site of several structures, stacked in order.

    Rows: structure by structure, each structure's centres in index order; the same values as
    :func:`local_coulomb_matrix` per structure, computed in vectorized passes over batches of
    structures with equal atom count and pbc (about :data:`BATCH_SITES` centres per pass).

    :param structures: a list of ``ase.Atoms`` (positions in Å).
    :param verbose: show a progress bar (sites done) on stderr; the values do not depend on it.
    :param ordering: ``"distance"`` (default) or ``"species"``, as for :func:`local_coulomb_matrix`.
    :param species_counts: as for :func:`local_coulomb_matrix`.
    :returns: (total centres, n_atoms*(n_atoms+1)//2).
    """
    structures = _as_structures(structures, "structures")
    n_atoms = check_n_atoms(n_atoms)
    z_species = atomic_numbers[_check_species(species)]
    slots = _slots(n_atoms, ordering, species_counts)
    names = [f"structure {k} of `structures`" for k in range(len(structures))]
    counts = np.array([np.count_nonzero(atoms.numbers == z_species) for atoms in structures])
    if np.any(counts == 0):
        k = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"{names[k]} has no atom of `species` {species!r}")
    starts = np.concatenate([[0], np.cumsum(counts)])
    features = np.empty((starts[-1], n_features(n_atoms)))
    keys = [(len(atoms), tuple(bool(p) for p in atoms.pbc)) for atoms in structures]
    batches = []
    for key in dict.fromkeys(keys):
        members = [k for k, other in enumerate(keys) if other == key]
        # Each centre's neighbourhood is computed on its own, so batching does not change any value.
        first = 0
        while first < len(members):
            last = first + max(1, int(np.searchsorted(np.cumsum(counts[members[first:]]), BATCH_SITES, side="right")))
            batches.append(members[first:last])
            first = last
    with progress(total=int(starts[-1]), desc="Coulomb matrices", enabled=verbose, unit="site") as bar:
        for members in batches:
            group = _Group.of([structures[k] for k in members], [names[k] for k in members])
            structure_of, center_index = np.nonzero(group.numbers == z_species)  # structure-major order
            shells = group.shells(structure_of, center_index, n_atoms, slots)
            rows = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in members])
            features[rows] = _features_of(shells, structure_of, group.names)
            bar.update(len(rows))
    return features


class LocalCoulombMatrix(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: a list of ``ase.Atoms`` -> local Coulomb matrices of their sites.

    ``transform`` stacks the centres of all structures, structure by structure, each in index
    order: row count = total number of ``species`` atoms (see :func:`local_coulomb_matrices`).
    ``fit`` learns nothing; it validates the parameters and sets ``n_features_out_``.

    :param n_atoms: atoms per matrix, centre included (default 20 -> 210 features).
    :param species: chemical symbol of the centres (default "Ge").
    :param verbose: show a progress bar (sites done) on stderr during ``transform``.
    :param ordering: ``"distance"`` (default, published) or ``"species"`` (SCIENCE.md §4).
    :param species_counts: for ``ordering="species"``: ``(symbol, count)`` pairs in slot order summing
        to ``n_atoms - 1``; None means :func:`default_species_counts`.
    """

    def __init__(self, n_atoms: int = 20, species: str = "Ge", verbose: bool = False, ordering: str = "distance",
                 species_counts=None):
        self.n_atoms = n_atoms
        self.species = species
        self.verbose = verbose
        self.ordering = ordering
        self.species_counts = species_counts

    def fit(self, X, y=None):
        """Validate the parameters and ``X`` (a list of ase.Atoms). Returns self."""
        check_n_atoms(self.n_atoms)
        _check_species(self.species)
        _slots(self.n_atoms, self.ordering, self.species_counts)
        _as_structures(X, "X")
        self.n_features_out_ = n_features(self.n_atoms)
        return self

    def transform(self, X) -> np.ndarray:
        """(total centres, n_atoms*(n_atoms+1)//2) features of every ``species`` site of ``X``."""
        check_is_fitted(self, "n_features_out_")
        structures = _as_structures(X, "X")
        try:
            return local_coulomb_matrices(structures, n_atoms=self.n_atoms, species=self.species, verbose=self.verbose,
                                          ordering=self.ordering, species_counts=self.species_counts)
        except ValueError as exc:
            raise ValueError(str(exc).replace("of `structures`", "of `X`")) from exc

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Feature names ``M_i_j`` (i <= j), upper triangle row-major."""
        check_is_fitted(self, "n_features_out_")
        return feature_names(self.n_atoms)


# --- slots: which atoms fill the neighbour slots --------------------------------------------------


@dataclass(frozen=True)
class _Slots:
    """The neighbour slots of one ordering, as kinds of neighbour with a slot count each.

    The distance ordering has one kind (any atom, ``kinds`` None); the species ordering one kind
    per species of ``species_counts``. Kind k fills slots ``starts[k] .. starts[k] + limits[k] - 1``.
    """

    kinds: np.ndarray | None  # (n_kinds,) atomic number of each kind; None: any atom
    limits: np.ndarray  # (n_kinds,) slots per kind
    starts: np.ndarray  # (n_kinds,) first slot of each kind (slot 0 is the centre)
    kind_of_z: np.ndarray | None  # (119,) kind index of each atomic number, -1 = left out

    @property
    def n_kinds(self) -> int:
        return len(self.limits)


def _slots(n_atoms: int, ordering, species_counts, ordering_label: str = "ordering",
           counts_label: str = "species_counts") -> _Slots:
    """The validated slot plan of ``ordering`` (``n_atoms`` already checked)."""
    if not isinstance(ordering, str) or ordering not in ORDERINGS:
        raise ValueError(f"`{ordering_label}` must be one of {ORDERINGS}; got {ordering!r}")
    if ordering == "distance":
        if species_counts is not None:
            raise ValueError(f"`{counts_label}` applies to the species ordering only; leave it None for "
                             f"`{ordering_label}`='distance' (got {species_counts!r})")
        return _Slots(None, np.array([n_atoms - 1]), np.array([1]), None)
    pairs = default_species_counts(n_atoms) if species_counts is None else _check_species_counts(
        species_counts, n_atoms, counts_label)
    kinds = np.array([atomic_numbers[symbol] for symbol, _ in pairs], dtype=np.int64)
    limits = np.array([count for _, count in pairs], dtype=np.int64)
    kind_of_z = np.full(len(chemical_symbols), -1, dtype=np.int64)
    kind_of_z[kinds] = np.arange(len(kinds))
    return _Slots(kinds, limits, 1 + np.concatenate([[0], np.cumsum(limits)[:-1]]), kind_of_z)


def _check_species_counts(species_counts, n_atoms: int, label: str) -> tuple[tuple[str, int], ...]:
    hint = f"e.g. [['O', 12], ['Ge', 7]] for n_atoms = 20; counts summing to n_atoms - 1 = {n_atoms - 1}"
    if isinstance(species_counts, Mapping):
        pairs = list(species_counts.items())
    elif isinstance(species_counts, (str, bytes)) or not hasattr(species_counts, "__iter__"):
        raise ValueError(f"`{label}` must be a sequence of (symbol, count) pairs in slot order ({hint}); "
                         f"got {species_counts!r}")
    else:
        pairs = list(species_counts)
    if not pairs:
        raise ValueError(f"`{label}` is empty; give (symbol, count) pairs in slot order ({hint})")
    checked = []
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"`{label}` must hold (symbol, count) pairs ({hint}); got the item {pair!r}")
        symbol, count = pair
        if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
            raise ValueError(f"`{label}` has {symbol!r}, not a chemical symbol such as 'O' ({hint})")
        if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"`{label}` count of {symbol!r} must be an integer >= 1; got {count!r}")
        if symbol in (s for s, _ in checked):
            raise ValueError(f"`{label}` names {symbol!r} twice; give each species once ({hint})")
        checked.append((symbol, int(count)))
    total = sum(count for _, count in checked)
    if total != n_atoms - 1:
        raise ValueError(f"`{label}` counts sum to {total}, but the n_atoms - 1 = {n_atoms - 1} slots after the "
                         f"centre must all be filled ({hint})")
    return tuple(checked)


# --- the batched neighbour search -----------------------------------------------------------------


@dataclass
class _Group:
    """Structures with equal atom count and pbc, stacked: the unit of one vectorized search."""

    positions: np.ndarray  # (B, n, 3) Å
    numbers: np.ndarray  # (B, n)
    lattice: np.ndarray  # (B, 3, 3) cell rows, zero rows on non-periodic axes
    dual: np.ndarray  # (B, 3, 3) dual_i . lattice_j = delta_ij on periodic axes, zero rows elsewhere
    heights: np.ndarray  # (B, 3) lattice plane spacings in Å, inf on non-periodic axes
    atom_radius: np.ndarray  # (B,) radius in Å of the sphere holding one atom on average
    diameter: np.ndarray  # (B,) a cluster's bounding-box diagonal in Å (inf when periodic)
    names: list

    @classmethod
    def of(cls, structures, names) -> _Group:
        pbc = np.array(structures[0].pbc, dtype=bool)
        positions = np.array([atoms.positions for atoms in structures], dtype=float)
        numbers = np.array([atoms.numbers for atoms in structures], dtype=np.int64)
        if not np.all(np.isfinite(positions)):
            bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=(1, 2)))[0])
            raise ValueError(f"{names[bad]} has NaN or inf positions")
        lattice = np.array([atoms.cell.array for atoms in structures], dtype=float) * pbc[None, :, None]
        dual, heights = _dual_basis(lattice, pbc, names)
        atom_radius = _atom_radius(positions, lattice, pbc)
        diameter = np.full(len(structures), np.inf)
        if not pbc.any():
            diameter = np.linalg.norm(np.ptp(positions, axis=1), axis=1)
        return cls(positions, numbers, lattice, dual, heights, atom_radius, diameter, list(names))

    def shells(self, structure_of, center_index, n_atoms: int, slots: _Slots | None = None) -> NeighbourShells:
        """Ordered neighbourhoods of centres given as (structure in group, atom index) pairs.

        ``slots`` None is the distance ordering (one kind of neighbour: any atom).
        """
        if slots is None:
            slots = _Slots(None, np.array([n_atoms - 1]), np.array([1]), None)
        n_centers = len(center_index)
        indices = np.full((n_centers, n_atoms), -1, dtype=np.int64)
        offsets = np.zeros((n_centers, n_atoms, 3), dtype=np.int64)
        z = np.zeros((n_centers, n_atoms), dtype=np.int64)
        distances = np.full((n_centers, n_atoms), np.inf)
        vectors = np.zeros((n_centers, n_atoms, 3))
        indices[:, 0] = center_index
        z[:, 0] = self.numbers[structure_of, center_index]
        distances[:, 0] = 0.0

        pending = np.arange(n_centers)
        # first radius: a sphere holding n_atoms atoms at the mean density, with a margin
        cutoff = _CUTOFF_MARGIN * n_atoms ** (1.0 / 3.0) * self.atom_radius[structure_of]
        if slots.kinds is not None:
            cutoff = np.maximum(cutoff, self._species_cutoff(slots)[structure_of])
        while len(pending):
            row, kind, rank, j, shift, vec, dist = self._nearest_images(
                structure_of[pending], center_index[pending], cutoff[pending], slots)
            # Every image within the cutoff was enumerated, so the k-th neighbour of each kind (and its
            # ties) is provably the true one when it lies inside the cutoff; the others retry with a
            # larger one.
            kth = np.full((len(pending), slots.n_kinds), np.inf)
            at_k = rank == slots.limits[kind] - 1
            kth[row[at_k], kind[at_k]] = dist[at_k]
            reached = cutoff[pending]
            done = np.all(kth + 2 * TIE_TOLERANCE < reached[:, None], axis=1) | (
                reached > self.diameter[structure_of[pending]])
            keep = done[row]
            target, slot = pending[row[keep]], slots.starts[kind[keep]] + rank[keep]
            indices[target, slot] = j[keep]
            offsets[target, slot] = shift[keep]
            z[target, slot] = self.numbers[structure_of[target], j[keep]]
            distances[target, slot] = dist[keep]
            vectors[target, slot] = vec[keep]
            pending = pending[~done]
            cutoff[pending] *= _CUTOFF_GROWTH
        return NeighbourShells(center_index, indices, offsets, z, distances, vectors)

    def _species_cutoff(self, slots: _Slots) -> np.ndarray:
        """First cutoff (Å) per structure of the species ordering: a sphere holding, at each kind's own
        mean density, the kind's slot count plus one atom, with a margin; the largest over the kinds.

        :raises ValueError: when a periodic structure has no atom of a kind (its slots could never be
            filled; a cluster pads them instead).
        """
        n_total = self.numbers.shape[1]
        present = np.count_nonzero(self.numbers[:, :, None] == slots.kinds[None, None, :], axis=1)  # (B, kinds)
        if np.isfinite(self.diameter).all():  # clusters: missing species are padding
            present = np.maximum(present, 1)
        elif np.any(present == 0):
            k, kind = (int(i) for i in np.argwhere(present == 0)[0])
            symbol = chemical_symbols[slots.kinds[kind]]
            raise ValueError(f"{self.names[k]} has no {symbol} atom, but `species_counts` asks for "
                             f"{slots.limits[kind]} {symbol} neighbours; a periodic structure needs an atom of every "
                             "species of `species_counts` (or use ordering='distance')")
        radius = self.atom_radius[:, None] * (n_total / present) ** (1.0 / 3.0)
        return np.max(_CUTOFF_MARGIN * (slots.limits + 1) ** (1.0 / 3.0) * radius, axis=1)

    def _nearest_images(self, structure_of, center_index, cutoff, slots: _Slots):
        """The first ``slots.limits[k]`` (atom, image) pairs of each kind k of each centre within its
        cutoff, in order.

        Returns arrays over the kept pairs: row (position of the centre in the arguments), kind
        (index into ``slots.limits``), rank (0-based place in the centre's order of that kind), atom
        index j, shift S (3 ints), vector (3, Å) and distance (Å). A centre with fewer candidates
        of a kind within its cutoff gets fewer rows.
        """
        n_total = self.positions.shape[1]
        # non-periodic axes have infinite heights, hence reach 0
        reach = np.floor(np.max(cutoff[:, None] / self.heights[structure_of], axis=0) + 0.5).astype(np.int64)
        chunk = max(1, _MAX_CANDIDATES // (n_total * int(np.prod(2 * reach + 1))))
        pieces = [self._candidates(structure_of[s:s + chunk], center_index[s:s + chunk], cutoff[s:s + chunk],
                                   reach, s) for s in range(0, len(center_index), chunk)]
        in_order = not reach.any()  # only nearest images: chunk by chunk, rows in centre order
        pieces = [p[k:k + 5] for p in pieces for k in range(0, len(p), 5)]  # nearest images, others
        row, j, shift, vec, dist = (np.concatenate(p) for p in zip(*pieces)) if len(pieces) > 1 else pieces[0]
        if np.any(dist < OVERLAP_TOLERANCE):
            at = int(np.flatnonzero(dist < OVERLAP_TOLERANCE)[0])
            raise ValueError(f"{self.names[structure_of[row[at]]]} has overlapping atoms: atom {j[at]} (image "
                             f"{shift[at].tolist()}) is closer than {OVERLAP_TOLERANCE} Å to centre "
                             f"{center_index[row[at]]}")

        # Order: (centre, kind, tie group, Z, atom index, S0, S1, S2), over "keys" = centre * n_kinds +
        # kind. A tie group is a run of a key's distances whose consecutive gaps are <= TIE_TOLERANCE.
        n_kinds = slots.n_kinds
        if slots.kind_of_z is None and in_order:  # distance ordering: one kind, the keys are the centres
            key, key_dist, source = row, dist, None
        else:  # the candidates grouped by centre, then kind; `source` maps the keys back to the candidates
            kind = (np.zeros_like(row) if slots.kind_of_z is None
                    else slots.kind_of_z[self.numbers[structure_of[row], j]])
            source = np.argsort(row * n_kinds + kind, kind="stable")
            source = source[kind[source] >= 0]  # species without slots are left out
            key, key_dist = row[source] * n_kinds + kind[source], dist[source]
        if len(key) == 0:  # e.g. a one-atom cluster
            return key, key, key, j[:0], shift[:0], vec[:0], dist[:0]
        n_keys = len(center_index) * n_kinds  # key is non-decreasing
        limit = np.tile(slots.limits, len(center_index))  # slots per key
        by_distance = _sort_within_rows(key, key_dist, n_keys)
        sorted_key = key[by_distance]
        new_group = np.ones(len(key), dtype=bool)
        new_group[1:] = (np.diff(key_dist[by_distance]) > TIE_TOLERANCE) | (np.diff(sorted_key) != 0)
        sorted_group = np.cumsum(new_group)
        # Only the groups up to the one holding each key's k-th neighbour matter.
        first = np.searchsorted(sorted_key, np.arange(n_keys))
        count = np.bincount(key, minlength=n_keys)
        last = sorted_group[np.maximum(first + np.minimum(count, limit) - 1, 0)]
        needed = sorted_group <= last[sorted_key]
        subset, group = by_distance[needed], sorted_group[needed]
        at = subset if source is None else source[subset]
        z = self.numbers[structure_of[row[at]], j[at]]
        order = subset[_argsort_keys(group, _tie_code(z, j[at], shift[at], n_total))]
        ordered_key = key[order]
        rank = np.arange(len(order)) - np.searchsorted(ordered_key, ordered_key)
        within = rank < limit[ordered_key]
        take = order[within]
        kind = key[take] % n_kinds
        take = take if source is None else source[take]
        return row[take], kind, rank[within], j[take], shift[take], vec[take], dist[take]

    def _candidates(self, structure_of, center_index, cutoff, reach, row_start):
        """Every (centre, atom, image) pair within the centre's cutoff except the centre itself.

        Each atom's image nearest to the centre (fractional displacement in [-0.5, 0.5) on each
        periodic axis) is always tested. Further images are formed only within ``reach`` shifts and
        within the cutoff of the centre's lattice planes: an image at fractional coordinate ``f_a``
        along periodic axis a is at least ``|f_a| * height_a`` from the centre. So a cutoff just above
        half a cell height adds the few images near the cell faces, not ``prod(2 reach + 1)`` times
        the work.

        :returns: row (position of the centre in the arguments, plus ``row_start``), atom index,
            shift S (3 ints), vector (3, Å) and distance (Å) of the nearest images, rows in centre
            order; then the same five arrays of the other images, also in centre order (absent when
            ``reach`` is 0).
        """
        lattice = self.lattice[structure_of]
        displacement = self.positions[structure_of] - self.positions[structure_of, center_index][:, None, :]
        # Wrap to the image with fractional displacement in [-0.5, 0.5) on each periodic axis (the
        # dual's zero rows leave non-periodic axes alone).
        fractional = displacement @ self.dual[structure_of].transpose(0, 2, 1)
        base = -np.floor(fractional + 0.5)
        displacement += base @ lattice
        squared = np.einsum("cax,cax->ca", displacement, displacement)
        keep = squared <= (cutoff * cutoff)[:, None]
        keep[np.arange(len(center_index)), center_index] = False  # the centre (base 0)
        c, n = np.nonzero(keep)
        near = (c, n, base[c, n].astype(np.int64), displacement[c, n], np.sqrt(squared[c, n]))
        if not reach.any():
            return (near[0] + row_start,) + near[1:]

        # The other images: a box of shifts per pair, |f + s| * height <= cutoff on each axis, widened
        # by a rounding slack (the exact test follows); non-periodic axes have infinite heights,
        # hence span 0 and f 0: shift 0 only.
        fractional += base
        span = (cutoff * (1.0 + 1e-9) + 1e-9)[:, None, None] / self.heights[structure_of][:, None, :]
        # a shift s != 0 on axis a needs |f_a + s| <= span_a, hence |f_a| >= 1 - span_a
        beyond = np.abs(fractional) >= 1.0 - span
        c, n = np.nonzero(beyond[:, :, 0] | beyond[:, :, 1] | beyond[:, :, 2])
        f, span = fractional[c, n], span[c, 0]
        low = np.maximum(np.ceil(-span - f), -reach).astype(np.int64)  # (pairs, 3)
        high = np.minimum(np.floor(span - f), reach).astype(np.int64)
        width = np.maximum(high - low + 1, 0)
        size = width.prod(axis=1) - np.all((low <= 0) & (high >= 0), axis=1)  # without the nearest image
        chosen = size > 0
        c, n, low, width = c[chosen], n[chosen], low[chosen], width[chosen]
        size = width.prod(axis=1)
        pair = np.repeat(np.arange(len(c)), size)
        local = np.arange(len(pair)) - np.repeat(np.cumsum(size) - size, size)
        relative = np.empty((len(pair), 3), dtype=np.int64)  # the shifts of each box, axis 0 slowest
        for axis in (2, 1, 0):
            local, relative[:, axis] = np.divmod(local, width[pair, axis])
        relative += low[pair]
        c, n = c[pair], n[pair]
        sides = 2 * reach + 1
        shifts = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), axis=-1)
        table = shifts.reshape(-1, 3) @ self.lattice  # (B, shifts, 3) Å
        shift_id = ((relative[:, 0] + reach[0]) * sides[1] + relative[:, 1] + reach[1]) * sides[2] + (
            relative[:, 2] + reach[2])
        vec = displacement[c, n] + table[structure_of[c], shift_id]
        squared = np.einsum("kx,kx->k", vec, vec)
        keep = (squared <= (cutoff * cutoff)[c]) & relative.any(axis=1)
        c, n, relative = c[keep], n[keep], relative[keep]
        far = (c + row_start, n, base[c, n].astype(np.int64) + relative, vec[keep], np.sqrt(squared[keep]))
        return (near[0] + row_start,) + near[1:] + far


def _sort_within_rows(row, values, n_rows):
    """Permutation sorting ``values`` within each row; ``row`` is non-decreasing, result is row-major."""
    count = np.bincount(row, minlength=n_rows)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    width = int(count.max(initial=0))
    table = np.full((n_rows, width), np.inf)
    table[row, np.arange(len(row)) - start[row]] = values
    order = np.argsort(table, axis=1)  # padding (inf) sorts last; order among equal values is free
    return (start[:, None] + order)[np.arange(width)[None, :] < count[:, None]]


def _tie_code(z, j, shift, n_total):
    """Integer sort keys for (Z, atom index, S0, S1, S2): one packed int64, or a tuple for lexsort."""
    low = shift.min(axis=0, initial=0)
    width = shift.max(axis=0, initial=0) - low + 1
    span = float(np.max(z, initial=0) + 1) * n_total * float(np.prod(width))
    if span < 2.0**40:
        code = z.astype(np.int64) * n_total + j
        for axis in range(3):
            code = code * width[axis] + (shift[:, axis] - low[axis])
        return code, span
    return (shift[:, 2], shift[:, 1], shift[:, 0], j, z), span


def _argsort_keys(group, code_and_span):
    """Order by (group, code); one int64 argsort when the pair packs, else lexsort."""
    code, span = code_and_span
    if isinstance(code, np.ndarray) and float(group.max(initial=0) + 1) * span < 2.0**62:
        return np.argsort(group * np.int64(span) + code)
    keys = (code,) if isinstance(code, np.ndarray) else code
    return np.lexsort(keys + (group,))


def _dual_basis(lattice, pbc, names):
    """Dual vectors (B, 3, 3) of the periodic axes (zero rows elsewhere) and plane spacings (B, 3)."""
    n_structures = len(lattice)
    dual = np.zeros_like(lattice)
    heights = np.full((n_structures, 3), np.inf)
    if not pbc.any():
        return dual, heights
    periodic = lattice[:, pbc]  # (B, p, 3)
    gram = periodic @ periodic.transpose(0, 2, 1)
    scale = np.max(np.abs(gram), axis=(1, 2)) ** pbc.sum()
    singular = ~(np.abs(np.linalg.det(gram)) > 1e-12 * scale)
    if np.any(singular):
        raise ValueError(f"{names[int(np.flatnonzero(singular)[0])]} has a singular cell along its periodic "
                         "axes; set a proper cell or pbc=False")
    # dual_i . lattice_j = delta_ij inside the span of the periodic vectors; the spacing between
    # lattice planes along axis i is 1/|dual_i|, whatever the position.
    dual[:, pbc] = np.linalg.solve(gram, periodic)
    heights[:, pbc] = 1.0 / np.linalg.norm(dual[:, pbc], axis=2)
    return dual, heights


def _atom_radius(positions, lattice, pbc):
    """Radius (Å) per structure of the sphere holding one atom at the mean number density."""
    n_structures, n_total = positions.shape[:2]
    if pbc.all():
        volume = np.abs(np.linalg.det(lattice))
    elif not pbc.any():
        # a cluster: its bounding box, 1 Å wider on every axis
        volume = np.prod(np.ptp(positions, axis=1) + 1.0, axis=1)
    else:
        # slab or wire: the periodic area or length times the positions' extent (plus 1 Å) along
        # the non-periodic directions
        periodic = lattice[:, pbc]
        volume = np.sqrt(np.abs(np.linalg.det(periodic @ periodic.transpose(0, 2, 1))))
        _, _, vt = np.linalg.svd(periodic)
        normal = vt[:, pbc.sum():]  # (B, 3 - p, 3)
        volume = volume * np.prod(np.ptp(positions @ normal.transpose(0, 2, 1), axis=1) + 1.0, axis=1)
    return (3.0 * volume / (4.0 * np.pi * n_total)) ** (1.0 / 3.0)


# --- features --------------------------------------------------------------------------------------


def _features_of(shells: NeighbourShells, structure_of, names) -> np.ndarray:
    features, overlap = _coulomb_features(shells.numbers.astype(float), shells.vectors)
    if overlap is not None:
        site, a, b = overlap
        raise ValueError(
            f"{names[structure_of[site]]} has overlapping atoms: atoms {shells.indices[site, a]} and "
            f"{shells.indices[site, b]} (images {shells.offsets[site, a].tolist()} and "
            f"{shells.offsets[site, b].tolist()}) are closer than {OVERLAP_TOLERANCE} Å in the "
            f"neighbourhood of centre {shells.centers[site]}"
        )
    return features


def _coulomb_features(numbers, vectors):
    """Features, and (sample, slot, slot) of the first overlapping pair or None."""
    rows, cols = _triangle(numbers.shape[1])
    diagonal = rows == cols
    features = np.empty((numbers.shape[0], len(rows)))
    features[:, diagonal] = 0.5 * numbers ** DIAGONAL_EXPONENT
    r, c = rows[~diagonal], cols[~diagonal]
    components = np.ascontiguousarray(vectors.transpose(2, 0, 1))  # (3, n, N): faster gathers
    delta = components[:, :, r] - components[:, :, c]
    separation = np.sqrt(np.einsum("xsp,xsp->sp", delta, delta))
    charge = numbers[:, r] * numbers[:, c]
    real = charge > 0
    overlap = real & (separation < OVERLAP_TOLERANCE)
    if np.any(overlap):
        sample, pair = np.argwhere(overlap)[0]
        return features, (int(sample), int(r[pair]), int(c[pair]))
    features[:, ~diagonal] = np.divide(charge, separation, out=np.zeros_like(charge), where=real)
    return features, None


# --- validation ------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _triangle(n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.triu_indices(n_atoms)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def _check_atoms(atoms, name: str = "atoms") -> Atoms:
    if not isinstance(atoms, Atoms):
        raise ValueError(f"`{name}` must be an ase.Atoms; got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError(f"`{name}` holds no atoms")
    return atoms


def _check_species(species, label: str = "species") -> str:
    if not isinstance(species, str) or species not in atomic_numbers or species == "X":
        raise ValueError(f"`{label}` must be a chemical symbol such as 'Ge'; got {species!r}")
    return species


def _as_structures(X, name: str) -> list:
    structures = [X] if isinstance(X, Atoms) else X
    try:
        structures = list(structures)
    except TypeError as exc:
        raise ValueError(f"`{name}` must be a list of ase.Atoms; got {type(X).__name__}") from exc
    if not structures:
        raise ValueError(f"`{name}` is empty; it needs at least one ase.Atoms")
    for position, atoms in enumerate(structures):
        if not isinstance(atoms, Atoms):
            raise ValueError(f"`{name}` must be a list of ase.Atoms; item {position} is {type(atoms).__name__}")
        if len(atoms) == 0:
            raise ValueError(f"`{name}` item {position} holds no atoms")
    return structures


def _resolve_centers(atoms: Atoms, centers, species) -> np.ndarray:
    if centers is None:
        species = _check_species(species)
        selected = np.flatnonzero(atoms.numbers == atomic_numbers[species])
        if len(selected) == 0:
            present = sorted(set(atoms.get_chemical_symbols()))
            raise ValueError(f"no atom of `species` {species!r} in `atoms` (it holds {present})")
        return selected.astype(np.int64)
    array = np.atleast_1d(np.asarray(centers))
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`centers` must be a 1-D list of integer atom indices; got {centers!r}")
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= len(atoms))]
    if bad.size:
        raise ValueError(f"`centers` holds indices {bad.tolist()} out of range 0..{len(atoms) - 1}")
    return array
