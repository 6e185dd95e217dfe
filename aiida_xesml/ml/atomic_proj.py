"""Full-precision projections from projwfc.x's ``atomic_proj.xml`` (QE 6.x layout).

projwfc.x prints ``|<φ_i|ψ_nk>|²`` in its stdout with three decimals and leaves out the small ones;
that is what aiida-quantumespresso's parser reads. Sites related by a symmetry that maps a k-point
onto another one (the 3₁ screw of α-quartz) then differ by the rounding, ~1e-3 states/eV in the
spectra. ``atomic_proj.xml`` holds the same (Löwdin-orthogonalized) projections as complex numbers
at full precision, and the eigenvalues in Ry; the states are in the order of projwfc.x's state list
(the order of the ProjectionData's orbitals).
"""

from __future__ import annotations

import re
from typing import NamedTuple
from xml.etree import ElementTree

import numpy as np

RY_TO_EV = 13.605693122994  # CODATA 2018, as QE


class AtomicProjections(NamedTuple):
    """``eigenvalues_ev`` (n_k, n_bands) eV; ``k_weights`` (n_k,); ``weights`` ``|<φ_i|ψ_nk>|²`` (n_states, n_k, n_bands);
    ``kpoints`` (n_k, 3) cartesian, in units of 2π/alat; ``n_electrons``; ``fermi_energy_ev`` (eV, as the header has it)."""

    eigenvalues_ev: np.ndarray
    k_weights: np.ndarray
    weights: np.ndarray
    kpoints: np.ndarray | None = None
    n_electrons: float | None = None
    fermi_energy_ev: float | None = None


class ProjwfcStates(NamedTuple):
    """The atomic states projwfc.x projects on, in its order (the order of ``atomic_proj.xml``).

    ``atom_index`` (n_states,) 0-based index of the atom in the structure; ``kind`` (n_states,) kind
    name; ``l`` and ``m`` (n_states,) angular momentum and its (1-based, QE) magnetic index.
    """

    atom_index: np.ndarray
    kind: list
    l: np.ndarray
    m: np.ndarray


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
    k_coordinates = np.stack([_numbers(k.text, 3, f"coordinates of k-point {i + 1}") for i, k in enumerate(kpoints)])
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
    n_electrons = _optional_float(header, "NUMBER_OF_ELECTRONS")
    fermi = _optional_float(header, "FERMI_ENERGY")
    return AtomicProjections(eigenvalues, k_weights, weights, k_coordinates, n_electrons,
                             None if fermi is None else fermi * RY_TO_EV)


def _optional_float(element, name: str) -> float | None:
    try:
        return float(element.attrib[name])
    except (KeyError, ValueError):
        return None


# projwfc.x (PP/src/projwfc.f90, collinear): 5x,"state #",i4,": atom ",i3," (",a3,"), wfc ",i2," (l=",i1," m=",i2,")"
_STATE_LINE = re.compile(r"state #\s*(\d+): atom\s+(\d+) \((\S+)\s*\), wfc\s+\d+ \(l=(\d) m=\s*(\d+)\)")


def read_projwfc_states(stdout: str) -> ProjwfcStates:
    """The state list of a projwfc.x stdout (spin-unpolarized or collinear runs).

    :raises ValueError: when the stdout lists no states, or not states 1..n in order.
    """
    rows = _STATE_LINE.findall(stdout)
    if not rows:
        raise ValueError("the projwfc.x stdout lists no atomic states ('state #   1: atom ...' lines)")
    numbers = np.array([int(row[0]) for row in rows])
    if not np.array_equal(numbers, np.arange(1, len(rows) + 1)):
        raise ValueError("the projwfc.x stdout's state list is not numbered 1..n in order: damaged?")
    return ProjwfcStates(
        atom_index=np.array([int(row[1]) - 1 for row in rows]),
        kind=[row[2] for row in rows],
        l=np.array([int(row[3]) for row in rows]),
        m=np.array([int(row[4]) for row in rows]),
    )


# The per-k listing that projwfc.x prints after the state list, up to "Lowdin Charges:". One
# pattern per kind of line (k-point, eigenvalue, first and continued psi lines, |psi|^2, blank).
_PROJ_TERM = r"\d+\.\d+\*\[#\s*\d+\]"
_LISTING_LINE = re.compile(
    r" k = (?:\s*-?\d+\.\d+){3}\s*"
    r"|==== e\(\s*\d+\) =\s*-?\d+\.\d+ eV ==== ?"
    rf"|\s+psi = (?:{_PROJ_TERM}(?:\+{_PROJ_TERM})*)?\s*"
    rf"|\s+\+{_PROJ_TERM}(?:\+{_PROJ_TERM})*\s*"
    r"|\s+\|psi\|\^2 = \d+\.\d+\s*"
    r"|\s*"
)
_EIGENVALUE = re.compile(r"^==== e\(\s*(\d+)\) =\s*(-?\d+\.\d+) eV ====", re.MULTILINE)


def check_projection_listing(text: str, n_k: int | None = None, n_bands: int | None = None) -> np.ndarray:
    """Check the per-k projection listing of a projwfc.x stdout without parsing its (rounded) numbers.

    Every line must have one of projwfc.x's formats; every k-point must list bands 1..n, each band
    closed by its ``|psi|^2`` line. A damaged or cut listing fails. The numbers themselves are read
    from ``atomic_proj.xml`` at full precision.

    :param text: the listing, from the first `` k = `` line up to (not including) ``Lowdin Charges:``.
    :param n_k: expected number of k-points (optional).
    :param n_bands: expected number of bands per k-point (optional).
    :returns: the printed eigenvalues (n_k, n_bands) in eV (five decimals), to compare with ``atomic_proj.xml``.
    :raises ValueError: naming the first line that does not fit, or the counts that do not match.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if not _LISTING_LINE.fullmatch(line):
            raise ValueError(f"line {number} of the projection listing is not projwfc.x output: {line[:80]!r}")
    n_kpoints = len(re.findall(r"^ k = ", text, re.MULTILINE))
    found = _EIGENVALUE.findall(text)
    n_closed = len(re.findall(r"^\s+\|psi\|\^2 = ", text, re.MULTILINE))
    indices = np.array([int(index) for index, _ in found], dtype=int)
    bands = len(found) // n_kpoints if n_kpoints else 0
    if (not n_kpoints or n_closed != len(found) or bands * n_kpoints != len(found)
            or not np.array_equal(indices, np.tile(np.arange(1, bands + 1), n_kpoints))):
        raise ValueError(f"the projection listing is incomplete: {n_kpoints} k-points, {len(found)} eigenvalues, "
                         f"{n_closed} closed band blocks, not bands 1..n at every k-point")
    eigenvalues = np.array([value for _, value in found], dtype=float).reshape(n_kpoints, bands)
    if (n_k is not None and n_kpoints != n_k) or (n_bands is not None and bands != n_bands):
        raise ValueError(f"the projection listing has {n_kpoints} k-points of {bands} bands; expected {n_k} of "
                         f"{n_bands}")
    return eigenvalues
