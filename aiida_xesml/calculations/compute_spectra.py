"""Calcfunction: site spectra of one snapshot from its projwfc.x (and pp.x) outputs."""

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_xesml.data.spectra import XesSpectraData
from aiida_xesml.ml.atomic_proj import read_atomic_proj
from aiida_xesml.ml.potential import site_potentials_ev
from aiida_xesml.ml.spectra import energy_grid, map_orbitals_to_sites, occupied_bands, project_sites, site_spectra

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


def _weights_from_site_projections(site_projections: orm.ArrayData, site_kind_names: list, emitters):
    """(eigenvalues eV, k weights, p and d weights of the emitters, n_electrons) from the plugin's ProjwfcCalculation."""
    names = site_projections.get_arraynames()
    missing = sorted({"p_weights", "eigenvalues_ev", "k_weights"} - set(names))
    if missing:
        raise ValueError(f"`site_projections` lacks the array(s) {missing}: not an xesml.projwfc output")
    p_weights = site_projections.get_array("p_weights")
    n_sites = p_weights.shape[0]
    kinds = site_projections.base.attributes.get("site_kinds", None) or [""] * n_sites
    # projwfc.x prints kind names in three characters
    if n_sites > len(site_kind_names) or any(kind and kind != site_kind_names[site][:3]
                                             for site, kind in enumerate(kinds)):
        raise ValueError(f"`site_projections` holds {n_sites} sites of kinds {sorted(set(kinds))}, which do not match "
                         f"the structure's {len(site_kind_names)} sites: the projections belong to another structure")
    padded = np.zeros((len(site_kind_names),) + p_weights.shape[1:])
    padded[:n_sites] = p_weights
    d_padded = np.zeros_like(padded)
    if "d_weights" in names:
        d_padded[:n_sites] = site_projections.get_array("d_weights")
    n_electrons = site_projections.base.attributes.get("n_electrons", None)
    return (site_projections.get_array("eigenvalues_ev"), site_projections.get_array("k_weights"),
            padded[emitters], d_padded[emitters], n_electrons)


@calcfunction
def compute_spectra(projections: orm.ProjectionData | None = None, bands: orm.BandsData | None = None,
                    structure: orm.StructureData | None = None, scf_parameters: orm.Dict | None = None,
                    parameters: orm.Dict | None = None, potential: orm.ArrayData | None = None,
                    label: orm.Float | None = None, retrieved: orm.FolderData | None = None,
                    site_projections: orm.ArrayData | None = None):
    """Kβ spectra of every emitter of ``structure`` (SCIENCE.md §2) as an XesSpectraData.

    The p-projections of each emitter are broadened over the occupied states (the lowest
    N_electrons / 2 bands, spin unpolarized) on the grid ``parameters['grid']`` (eV). Alignment
    'vbm' subtracts the highest occupied level; 'semicore' each site's Ge 3d centroid; 'potential'
    each site's local + Hartree potential V_s (eV, pp.x plot_num 11, averaged within
    ``potential_radius`` Å) plus the constant ``potential_offset`` (eV), so that E = ε − V_s − offset.

    Projections come from one of two places:

    - ``site_projections`` (output of the plugin's ProjwfcCalculation, what xesml.spectrum uses): per-site p
      and d weights, eigenvalues and k weights at full precision, and the electron count
      (``scf_parameters`` is then optional);
    - ``projections`` and ``bands`` (upstream ProjwfcCalculation's outputs; orbitals are mapped to
      sites by position, minimum image). With ``retrieved`` holding ``atomic_proj.xml``, eigenvalues
      and projections come from it at full precision; otherwise from the stdout (three decimals).

    The attribute ``parameters.projections_source`` says which was used.
    """
    if structure is None or parameters is None:
        raise ValueError("compute_spectra needs `structure` and `parameters`")
    settings = parameters.get_dict()
    atoms = structure.get_ase()
    emitters = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == settings["emitter"])
    if len(emitters) == 0:
        raise ValueError(f"the structure has no `{settings['emitter']}` atom")
    n_electrons = None
    if site_projections is not None:
        eigenvalues, k_weights, p_weights, d_weights, n_electrons = _weights_from_site_projections(
            site_projections, [site.kind_name for site in structure.sites], emitters)
        source = site_projections.base.attributes.get("source", ATOMIC_PROJ)
    elif projections is not None and bands is not None:
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
        p_weights = project_sites(weights, site_of_orbital, angular, len(atoms), l=1)[emitters]
        d_weights = project_sites(weights, site_of_orbital, angular, len(atoms), l=2)[emitters]
    else:
        raise ValueError("give `site_projections`, or `projections` and `bands`")
    if scf_parameters is not None:
        n_electrons = scf_parameters["number_of_electrons"]
    if n_electrons is None:
        raise ValueError("the number of electrons is unknown: give `scf_parameters` (the SCF's output_parameters)")

    n_occupied = occupied_bands(n_electrons, eigenvalues.shape[1])
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
        occupied, p_weights[:, :, :n_occupied], k_weights, grid=grid, fwhm=settings["fwhm"],
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
