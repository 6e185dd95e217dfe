"""Full-precision projections from projwfc.x's ``atomic_proj.xml`` (QE 6.x layout).

projwfc.x prints ``|<φ_i|ψ_nk>|²`` in its stdout with three decimals and leaves out the small ones;
that is what aiida-quantumespresso's parser reads. Sites related by a symmetry that maps a k-point
onto another one (the 3₁ screw of α-quartz) then differ by the rounding, ~1e-3 states/eV in the
spectra. ``atomic_proj.xml`` holds the same (Löwdin-orthogonalized) projections as complex numbers
at full precision, and the eigenvalues in Ry; the states are in the order of projwfc.x's state list
(the order of the ProjectionData's orbitals).
"""

from __future__ import annotations

from typing import NamedTuple
from xml.etree import ElementTree

import numpy as np

RY_TO_EV = 13.605693122994  # CODATA 2018, as QE


class AtomicProjections(NamedTuple):
    """``eigenvalues_ev`` (n_k, n_bands) eV; ``k_weights`` (n_k,); ``weights`` ``|<φ_i|ψ_nk>|²`` (n_states, n_k, n_bands)."""

    eigenvalues_ev: np.ndarray
    k_weights: np.ndarray
    weights: np.ndarray


def _numbers(text: str | None, count: int, what: str) -> np.ndarray:
    values = np.array((text or "").split(), dtype=float)
    if values.size != count:
        raise ValueError(f"atomic_proj.xml: {what} has {values.size} numbers, expected {count}")
    return values


def read_atomic_proj(content: str | bytes) -> AtomicProjections:
    """Parse the text of ``atomic_proj.xml`` (spin-unpolarized runs).

    :raises ValueError: naming what is missing or inconsistent (a truncated or foreign file).
    """
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise ValueError(f"atomic_proj.xml is not well-formed XML ({exc}): truncated or corrupted?") from exc
    header = root.find("HEADER")
    if root.tag != "PROJECTIONS" or header is None:
        raise ValueError("atomic_proj.xml: no <PROJECTIONS><HEADER>: not a projwfc.x 6.x projection file")
    try:
        n_bands = int(header.attrib["NUMBER_OF_BANDS"])
        n_k = int(header.attrib["NUMBER_OF_K-POINTS"])
        n_spin = int(header.attrib["NUMBER_OF_SPIN_COMPONENTS"])
        n_states = int(header.attrib["NUMBER_OF_ATOMIC_WFC"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"atomic_proj.xml: HEADER lacks or garbles {exc}") from exc
    if n_spin != 1:
        raise ValueError(f"atomic_proj.xml has {n_spin} spin components; only spin-unpolarized runs are supported")

    eigenstates = root.find("EIGENSTATES")
    children = list(eigenstates) if eigenstates is not None else []
    kpoints = [c for c in children if c.tag == "K-POINT"]
    energies = [c for c in children if c.tag == "E"]
    projections = [c for c in children if c.tag == "PROJS"]
    if not (len(kpoints) == len(energies) == len(projections) == n_k):
        raise ValueError(f"atomic_proj.xml: {len(kpoints)} k-points, {len(energies)} eigenvalue and "
                         f"{len(projections)} projection blocks, expected {n_k} each")

    k_weights = np.array([float(k.attrib.get("Weight", "nan")) for k in kpoints])
    eigenvalues = np.stack([_numbers(e.text, n_bands, f"eigenvalues of k-point {i + 1}")
                            for i, e in enumerate(energies)]) * RY_TO_EV
    weights = np.empty((n_states, n_k, n_bands))
    for k, block in enumerate(projections):
        states = block.findall("ATOMIC_WFC")
        if len(states) != n_states:
            raise ValueError(f"atomic_proj.xml: k-point {k + 1} has {len(states)} states, expected {n_states}")
        for state in states:
            index = int(state.attrib["index"]) - 1
            pairs = _numbers(state.text, 2 * n_bands, f"state {index + 1} at k-point {k + 1}").reshape(n_bands, 2)
            weights[index, k] = pairs[:, 0] ** 2 + pairs[:, 1] ** 2
    if not (np.all(np.isfinite(k_weights)) and np.all(np.isfinite(eigenvalues)) and np.all(np.isfinite(weights))):
        raise ValueError("atomic_proj.xml holds non-finite numbers")
    return AtomicProjections(eigenvalues, k_weights, weights)
