"""Calcfunction: site spectra of one snapshot from its projwfc.x (and pp.x) outputs."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.potential import site_potentials_ev
from aiida_xesml.ml.spectra import energy_grid, map_orbitals_to_sites, project_sites, site_spectra


def _orbital_arrays(projections: orm.ProjectionData):
    """Per orbital: position (Å), angular momentum, and |<orbital|psi_nk>|² (n_orb, n_k, n_bands)."""
    orbitals = projections.get_orbitals()
    dicts = [orbital.get_orbital_dict() for orbital in orbitals]
    positions = np.array([d["position"] for d in dicts], dtype=float)
    angular = np.array([d["angular_momentum"] for d in dicts], dtype=int)
    weights = np.stack([projections.get_array(f"proj_array_{i}") for i in range(len(orbitals))])
    return positions, angular, weights


@calcfunction
def compute_spectra(projections: orm.ProjectionData, bands: orm.BandsData, structure: orm.StructureData,
                    scf_parameters: orm.Dict, parameters: orm.Dict, potential: orm.ArrayData | None = None,
                    label: orm.Float | None = None):
    """Kβ spectra of every emitter of ``structure`` (SCIENCE.md §2) as an XesSpectraData.

    The p-projections of each emitter's orbitals (mapped to sites by position, minimum image) are
    summed per site and broadened over the occupied states (the lowest N_electrons / 2 bands, spin
    unpolarized) on the grid ``parameters['grid']`` (eV). Alignment 'vbm' subtracts the highest
    occupied level; 'semicore' each site's Ge 3d centroid; 'potential' each site's local + Hartree
    potential V_s (eV, pp.x plot_num 11, averaged within ``potential_radius`` Å) plus the constant
    ``potential_offset`` (eV), so that E = ε − V_s − offset.
    """
    settings = parameters.get_dict()
    atoms = structure.get_ase()
    emitters = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == settings["emitter"])
    if len(emitters) == 0:
        raise ValueError(f"the structure has no `{settings['emitter']}` atom")
    positions, angular, weights = _orbital_arrays(projections)
    site_of_orbital = map_orbitals_to_sites(positions, atoms.positions, atoms.cell[:], pbc=atoms.pbc)
    n_sites = len(atoms)
    p_weights = project_sites(weights, site_of_orbital, angular, n_sites, l=1)[emitters]
    d_weights = project_sites(weights, site_of_orbital, angular, n_sites, l=2)[emitters]

    eigenvalues = bands.get_bands()
    k_weights = bands.get_array("weights")
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
        parameters={**settings, "homo_ev": homo, "n_occupied_bands": n_occupied},
    )
    return spectra
