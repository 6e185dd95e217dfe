"""Calcfunction: site spectra of one snapshot from its projwfc.x (and pp.x) outputs."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.atomic_proj import read_atomic_proj
from aiida_xesml.ml.potential import site_potentials_ev
from aiida_xesml.ml.spectra import energy_grid, map_orbitals_to_sites, project_sites, site_spectra

ATOMIC_PROJ = "atomic_proj.xml"
#: Where projwfc.x writes it, relative to its working folder (parent out folder 'out', prefix 'aiida').
ATOMIC_PROJ_PATH = f"out/aiida.save/{ATOMIC_PROJ}"


def _orbital_arrays(projections: orm.ProjectionData):
    """Per orbital: position (Å), angular momentum, and |<orbital|psi_nk>|² (n_orb, n_k, n_bands)."""
    orbitals = projections.get_orbitals()
    dicts = [orbital.get_orbital_dict() for orbital in orbitals]
    positions = np.array([d["position"] for d in dicts], dtype=float)
    angular = np.array([d["angular_momentum"] for d in dicts], dtype=int)
    weights = np.stack([projections.get_array(f"proj_array_{i}") for i in range(len(orbitals))])
    return positions, angular, weights


def _atomic_projections(retrieved: orm.FolderData | None):
    """The full-precision projections in ``retrieved``, or None when it holds no atomic_proj.xml."""
    if retrieved is None:
        return None
    names = [path for path in (ATOMIC_PROJ_PATH, ATOMIC_PROJ) if _has_object(retrieved, path)]
    if not names:
        return None
    return read_atomic_proj(retrieved.base.repository.get_object_content(names[0], mode="rb"))


def _has_object(folder: orm.FolderData, path: str) -> bool:
    try:
        folder.base.repository.get_object(path)
    except (FileNotFoundError, OSError):
        return False
    return True


@calcfunction
def compute_spectra(projections: orm.ProjectionData, bands: orm.BandsData, structure: orm.StructureData,
                    scf_parameters: orm.Dict, parameters: orm.Dict, potential: orm.ArrayData | None = None,
                    label: orm.Float | None = None, retrieved: orm.FolderData | None = None):
    """Kβ spectra of every emitter of ``structure`` (SCIENCE.md §2) as an XesSpectraData.

    The p-projections of each emitter's orbitals (mapped to sites by position, minimum image) are
    summed per site and broadened over the occupied states (the lowest N_electrons / 2 bands, spin
    unpolarized) on the grid ``parameters['grid']`` (eV). Alignment 'vbm' subtracts the highest
    occupied level; 'semicore' each site's Ge 3d centroid; 'potential' each site's local + Hartree
    potential V_s (eV, pp.x plot_num 11, averaged within ``potential_radius`` Å) plus the constant
    ``potential_offset`` (eV), so that E = ε − V_s − offset.

    With ``retrieved`` (projwfc.x's retrieved folder) holding ``atomic_proj.xml``, eigenvalues and
    projections come from it at full precision; ProjectionData and BandsData (stdout: three decimals
    per projection, small ones left out) then only give the orbitals. The attribute
    ``parameters.projections_source`` says which was used.
    """
    settings = parameters.get_dict()
    atoms = structure.get_ase()
    emitters = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == settings["emitter"])
    if len(emitters) == 0:
        raise ValueError(f"the structure has no `{settings['emitter']}` atom")
    positions, angular, weights = _orbital_arrays(projections)
    eigenvalues = bands.get_bands()
    k_weights = bands.get_array("weights")
    source = "stdout"
    full = _atomic_projections(retrieved)
    if full is not None:
        if full.weights.shape != weights.shape:
            raise ValueError(f"{ATOMIC_PROJ} holds projections of shape {full.weights.shape}, the parsed stdout "
                             f"{weights.shape}: they are not from the same run")
        eigenvalues, k_weights, weights, source = full.eigenvalues_ev, full.k_weights, full.weights, ATOMIC_PROJ
    site_of_orbital = map_orbitals_to_sites(positions, atoms.positions, atoms.cell[:], pbc=atoms.pbc)
    n_sites = len(atoms)
    p_weights = project_sites(weights, site_of_orbital, angular, n_sites, l=1)[emitters]
    d_weights = project_sites(weights, site_of_orbital, angular, n_sites, l=2)[emitters]

    n_occupied = int(round(scf_parameters["number_of_electrons"])) // 2
    occupied = eigenvalues[:, :n_occupied]
    homo = float(occupied.max())
    grid = energy_grid(*settings["grid"])
    alignment = settings["alignment"]
    reference = None
    if alignment == "potential":
        data = potential.get_array("data")
        voxel = potential.get_array("voxel")
        reference = settings["potential_offset"] + site_potentials_ev(
            data, voxel, atoms.positions[emitters], settings["potential_radius"])
    result = site_spectra(
        eigenvalues[:, :n_occupied], p_weights[:, :, :n_occupied], k_weights, grid=grid, fwhm=settings["fwhm"],
        lorentzian_fwhm=settings["lorentzian_fwhm"], alignment=alignment, homo=homo,
        d_projections=d_weights[:, :, :n_occupied] if alignment == "semicore" else None, reference=reference,
    )
    spectra = XesSpectraData()
    spectra.set_spectra(
        energy_ev=result.energies, intensity=result.intensities, site_index=emitters,
        reference_ev=result.references, label=None if label is None else np.full(len(emitters), label.value),
        parameters={**settings, "homo_ev": homo, "n_occupied_bands": n_occupied, "projections_source": source},
    )
    return spectra
