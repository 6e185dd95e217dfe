"""The plugin's reference data sets as plain arrays: load them without AiiDA.

``examples/reference_dataset.py`` computes the data sets with real pw.x + projwfc.x through
``xesml.spectra`` and writes, next to each AiiDA archive (the provenance), an ``.npz`` with:

- ``energy_ev`` (n_E,): the common grid, eV relative to each site's VBM;
- ``intensity`` (n_sites, n_E): Kβ site spectra, states/eV;
- per site: ``snapshot_index``, ``site_index`` (the Ge atom's index in its snapshot), ``label``
  (what analyses group by; see the data card, docs/reference/dataset.md), ``cn`` (O within
  2.3 Å, all periodic images), ``reference_ev`` (the subtracted VBM, eV, absolute);
- per snapshot: ``cells`` (n_snapshots, 3, 3) Å, ``snapshot_label``, ``atom_offsets``
  (n_snapshots + 1,) into the concatenated ``positions`` (n_atoms_total, 3) Å and ``numbers``
  (n_atoms_total,) atomic numbers; ``snapshot_uuid`` the StructureData's UUID in the archive.

    >>> from aiida_xesml.ml.reference_data import load_reference_npz, reference_path
    >>> data = load_reference_npz(reference_path("crystalline-rattled"))
    >>> atoms = data.structures()            # one ase.Atoms per snapshot
    >>> data.intensity.shape, data.cn[:5]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

#: Where the checkout keeps the data sets (examples/data next to the package).
DATA_DIR = Path(__file__).resolve().parents[2] / "examples" / "data"
SITE_ARRAYS = ("intensity", "snapshot_index", "site_index", "label", "cn", "reference_ev")
SNAPSHOT_ARRAYS = ("cells", "snapshot_label", "atom_offsets", "snapshot_uuid")


@dataclass(frozen=True)
class ReferenceData:
    """One reference data set (see the module docstring for the arrays and their units)."""

    energy_ev: np.ndarray
    intensity: np.ndarray
    snapshot_index: np.ndarray
    site_index: np.ndarray
    label: np.ndarray
    cn: np.ndarray
    reference_ev: np.ndarray
    cells: np.ndarray
    snapshot_label: np.ndarray
    atom_offsets: np.ndarray
    positions: np.ndarray
    numbers: np.ndarray
    snapshot_uuid: np.ndarray

    @property
    def n_sites(self) -> int:
        return len(self.intensity)

    @property
    def n_snapshots(self) -> int:
        return len(self.cells)

    def snapshot(self, index: int) -> Atoms:
        """Snapshot ``index`` as a periodic ase.Atoms (Å)."""
        start, stop = self.atom_offsets[index], self.atom_offsets[index + 1]
        return Atoms(numbers=self.numbers[start:stop], positions=self.positions[start:stop], cell=self.cells[index],
                     pbc=True)

    def structures(self) -> list[Atoms]:
        """Every snapshot, in snapshot-index order (``snapshot_index`` of a site indexes this list)."""
        return [self.snapshot(index) for index in range(self.n_snapshots)]

    def cn_histogram(self, mask=None) -> dict[int, int]:
        """Sites per CN (O within 2.3 Å), over all sites or those where ``mask`` is True."""
        values = self.cn if mask is None else self.cn[np.asarray(mask, dtype=bool)]
        counts = np.bincount(values.astype(int)) if len(values) else np.array([], dtype=int)
        return {cn: int(count) for cn, count in enumerate(counts) if count}


def reference_path(name: str, suffix: str = ".npz", folder: Path | str | None = None) -> Path:
    """Path of data set ``name`` (e.g. 'crystalline-rattled') in ``folder`` (default: examples/data)."""
    return Path(folder or DATA_DIR) / f"reference-{name}{suffix}"


def sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_reference_npz(path: Path | str) -> ReferenceData:
    """Load a reference data set written by ``examples/reference_dataset.py``.

    :raises ValueError: when the file lacks an array or the arrays do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`path` {path} does not exist; the data sets are under {DATA_DIR} (reference_path(name))")
    with np.load(path, allow_pickle=False) as archive:
        fields = {name: archive[name] for name in archive.files}
    missing = sorted(set(ReferenceData.__dataclass_fields__) - set(fields))
    if missing:
        raise ValueError(f"`path` {path} lacks the arrays {missing}: not a reference data set")
    data = ReferenceData(**{name: fields[name] for name in ReferenceData.__dataclass_fields__})
    n_sites, n_snapshots = data.n_sites, data.n_snapshots
    if data.intensity.shape != (n_sites, len(data.energy_ev)):
        raise ValueError(f"{path}: intensity {data.intensity.shape} does not fit the grid of {len(data.energy_ev)}")
    for name in SITE_ARRAYS[1:]:
        if getattr(data, name).shape != (n_sites,):
            raise ValueError(f"{path}: `{name}` must hold one value per site ({n_sites})")
    if data.atom_offsets.shape != (n_snapshots + 1,) or data.atom_offsets[-1] != len(data.positions):
        raise ValueError(f"{path}: `atom_offsets` does not index `positions`")
    if data.snapshot_index.size and (data.snapshot_index.min() < 0 or data.snapshot_index.max() >= n_snapshots):
        raise ValueError(f"{path}: `snapshot_index` points outside the {n_snapshots} snapshots")
    return data
