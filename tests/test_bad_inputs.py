"""Bad input across the whole public surface, as one table (issue 7, "Bad input and security").

Every row of :data:`CASES` feeds one bad input to one public entry point and states what must come
back: an exception class (core functions, spectrum files, calcfunctions), a 3xx exit status (work
chains) or a clean CLI error, and a regular expression the message must match, so that the message
names the problem. Each row also checks that nothing is stored half-way, with a rule per surface:

- ``core``, ``file``, ``cli``: no new node at all in the profile;
- ``calcfunction``: the only new nodes are the calcfunction's node and its own inputs; the node is
  excepted, records the same message, and has no outgoing link (no output node);
- ``workchain``: the only new nodes are the work chain's node and its own inputs; it finished with
  the exit status and message, called nothing (no CalcJob, no calcfunction) and has no outputs.

No QE runs: every work chain case stops in its input check, before its first child. The count of
cases is printed at the end of the session ("bad-input cases: N across 5 surfaces").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms
from cli.cli_asserts import assert_fails
from click.testing import CliRunner

from aiida_xesml.ml import limits
from aiida_xesml.ml.descriptors import local_coulomb_matrix
from aiida_xesml.ml.eca import ECA
from aiida_xesml.ml.emulator import MLPEmulator
from aiida_xesml.ml.measured import read_spectrum_file, shift_and_interpolate
from aiida_xesml.ml.moments import check_windows, moment_names, spectral_moments
from aiida_xesml.ml.reconstruct import distances_from_coulomb
from aiida_xesml.ml.spectra import broaden, energy_grid, site_spectra
from aiida_xesml.ml.structures import rutile_geo2
from aiida_xesml.ml.training import train_emulator as core_train_emulator

SURFACES = ("core", "file", "calcfunction", "workchain", "cli")
REFERENCE_EV = 7000.0


@dataclass(frozen=True)
class Case:
    """One bad input: ``trigger(env)`` feeds it; ``expect`` is an exception class, a work chain exit
    status, or ``"cli"``; ``pattern`` is a regex the error message must match."""

    id: str
    surface: str
    trigger: Callable[[dict], Any]
    expect: Any
    pattern: str
    #: Why this bad input does not give a clear error yet (the case is a strict xfail until it does).
    known_gap: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# inputs the cases share
# ---------------------------------------------------------------------------------------------------------------

def _spectrum_text(energy, intensity, header=("# synthetic Kβ spectrum", "# energy_eV intensity")) -> str:
    return "\n".join([*header, *(f"{e:.4f} {i:.8e}" for e, i in zip(energy, intensity))]) + "\n"


def _gaussians(energy):
    """A two-peak (Kβ″ and Kβ2) spectrum on ``energy`` (eV relative to the reference)."""
    return 0.3 * np.exp(-0.5 * ((energy + 18) / 2) ** 2) + np.exp(-0.5 * ((energy + 3) / 1.5) ** 2)


@pytest.fixture(scope="module")
def env(aiida_profile, qe_codes, pseudo_family, tmp_path_factory):
    """Everything the cases need, made once: core objects, stored nodes, builders' codes, a folder."""
    from aiida_xesml.data import (
        EmulatorData,
        XesDatasetData,
        XesEcaData,
        XesSpectraData,
    )

    rng = np.random.default_rng(0)
    grid = energy_grid(-30.0, 5.0, 0.05)
    names = moment_names()

    # core: a small fitted emulator (10 features = n_atoms 4) and its ECA
    X = rng.normal(size=(40, 10))
    Y = np.tanh(X @ rng.normal(size=(10, 8)) / 3)
    emulator = MLPEmulator(hidden_layer_sizes=(4,), max_iter=200).fit(X, Y)
    eca = ECA(emulator, n_components=2).fit(X, Y)

    # nodes: spectra of the two Ge sites of one rutile snapshot, a data set, an emulator, an ECA
    structure = orm.StructureData(ase=rutile_geo2()).store()
    spectra = XesSpectraData()
    spectra.set_spectra(grid, np.vstack([_gaussians(grid), _gaussians(grid + 0.5)]), site_index=[0, 1],
                        reference_ev=[0.0, 0.0], snapshot_index=[0, 0], label=[0.0, 0.0])
    spectra.store()
    dataset = XesDatasetData()
    dataset.set_dataset(X, Y, snapshot_index=np.arange(40) // 2, site_index=np.arange(40) % 2,
                        label=np.repeat([0.0, 10.0], 20), moment_names=names,
                        descriptor={"n_atoms": 4, "species": "Ge"}, windows={"kbpp": [-24, -13], "kb2": [-12, 2]})
    dataset.store()
    metrics = {key: [float(v) for v in values] for key, values in emulator.metrics(X, Y).items()}
    emulator_node = EmulatorData()
    emulator_node.set_emulator(emulator, settings={"hidden_layer_sizes": [4]}, metrics=metrics, target_names=names)
    emulator_node.store()
    eca_node = XesEcaData()
    eca_node.set_eca(eca, settings={"n_components": 2}, target_names=names, target_r2=metrics["r2"])
    eca_node.base.attributes.set("descriptor", {"n_atoms": 4, "species": "Ge"})
    eca_node.store()
    eca_without_descriptor = XesEcaData()  # fitted on 10 features, but nothing says n_atoms = 4
    eca_without_descriptor.set_eca(eca, settings={"n_components": 2}, target_names=names)
    eca_without_descriptor.store()
    descriptors = orm.ArrayData()
    descriptors.set_array("descriptors", X[:2])
    descriptors.set_array("snapshot_index", np.array([0, 0]))
    descriptors.set_array("site_index", np.array([0, 1]))
    descriptors.store()
    moments = orm.ArrayData()  # rows of snapshot 5, which has no descriptors
    moments.set_array("moments", Y[:2])
    for name, values in (("snapshot_index", [5, 5]), ("site_index", [0, 1]), ("label", [0.0, 0.0])):
        moments.set_array(name, np.array(values))
    moments.base.attributes.set("moment_names", names)
    moments.store()
    measured = orm.XyData()
    energy = grid[::2] + REFERENCE_EV
    measured.set_x(energy, "energy", "eV")
    measured.set_y(_gaussians(grid[::2]), "intensity", "arb. units")
    measured.store()
    unsorted = orm.XyData()
    unsorted.set_x(energy[::-1].copy(), "energy", "eV")
    unsorted.set_y(_gaussians(grid[::2]), "intensity", "arb. units")
    unsorted.store()
    trajectory = orm.TrajectoryData(structurelist=[structure]).store()

    folder = tmp_path_factory.mktemp("bad_inputs")
    good_file = folder / "measured.txt"
    good_file.write_text(_spectrum_text(energy, _gaussians(grid[::2])))
    return {
        "grid": grid, "X": X, "Y": Y, "emulator": emulator, "eca": eca, "structure": structure,
        "spectra": spectra, "dataset": dataset, "emulator_node": emulator_node, "eca_node": eca_node,
        "eca_without_descriptor": eca_without_descriptor,
        "descriptors": descriptors, "moments": moments, "measured": measured, "unsorted": unsorted,
        "trajectory": trajectory, "codes": qe_codes, "folder": folder, "good_file": good_file,
    }


def _write(e, name: str, content) -> str:
    path = e["folder"] / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _sparse(e, name: str, size: int):
    """A file of ``size`` bytes written as a hole (instant, no disk used)."""
    path = e["folder"] / name
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def _good_lines(n: int = 20, start: float = 0.0) -> list[str]:
    return [f"{start + 0.5 * k:.2f} {1.0 + k:.3f}" for k in range(n)]


def _spectrum_file(e, name: str, lines) -> Any:
    return read_spectrum_file(_write(e, name, "\n".join(lines) + "\n"))


# ---------------------------------------------------------------------------------------------------------------
# triggers that need more than one line
# ---------------------------------------------------------------------------------------------------------------

def _overlapping_atoms() -> Atoms:
    atoms = rutile_geo2()
    atoms.positions[2] = atoms.positions[0]
    return atoms


def _unfitted_predict(e):
    return MLPEmulator().predict(e["X"])


def _extended_xyz(n_atoms: int) -> str:
    lines = [str(n_atoms), 'Lattice="40 0 0 0 40 0 0 0 40" Properties=species:S:1:pos:R:3 pbc="T T T"']
    lines += [f"{'Ge' if k % 3 == 0 else 'O'} {(k % 20) * 2.0:.1f} {(k // 20 % 20) * 2.0:.1f} {(k // 400) * 2.0:.1f}"
              for k in range(n_atoms)]
    return "\n".join(lines) + "\n"


def _run(builder):
    return run_get_node(builder)[1]


def _spectrum_builder(e, parameters=None, structure=None, pp=False):
    from aiida_xesml.workflows.spectrum import SpectrumWorkChain

    codes = e["codes"]
    builder = SpectrumWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], structure or e["structure"], protocol="fast",
        pp_code=codes["pp"] if pp else None)
    if parameters is not None:
        builder.parameters = orm.Dict(parameters)
    return builder


def _spectrum_missing_pseudo(e):
    builder = _spectrum_builder(e)
    builder.scf.pw.pseudos = {"Ge": builder.scf.pw.pseudos["Ge"]}
    return _run(builder)


def _spectra_builder(e, structures=None, labels=None, parameters=None):
    from aiida_xesml.workflows.spectra import SpectraWorkChain

    codes = e["codes"]
    builder = SpectraWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], structures or [e["structure"]], protocol="fast", labels=labels)
    if parameters is not None:
        builder.spectrum.parameters = orm.Dict(parameters)
    return builder


def _spectra_without_snapshots(e):
    builder = _spectra_builder(e)
    builder.pop("structures")
    return _run(builder)


def _silica(e):
    atoms = rutile_geo2()
    atoms.symbols = ["Si" if s == "Ge" else s for s in atoms.get_chemical_symbols()]
    return orm.StructureData(ase=atoms)


def _md_builder(e, structure=None, **overrides):
    from aiida_xesml.workflows.md import MdWorkChain

    return MdWorkChain.get_builder_from_protocol(e["codes"]["pw"], structure or e["structure"], protocol="fast",
                                                 overrides=overrides)


def _md_seeded(e, seed):
    builder = _md_builder(e, nstep=1)
    builder.velocity_seed = orm.Int(seed)
    return builder


def _amorphous_builder(e, **overrides):
    from aiida_xesml.workflows.amorphous import AmorphousWorkChain

    return AmorphousWorkChain.get_builder_from_protocol(e["codes"]["pw"], e["structure"], protocol="fast",
                                                        overrides=overrides)


def _zero_velocities(atoms) -> orm.ArrayData:
    velocities = orm.ArrayData()
    velocities.set_array("velocities", np.zeros((len(atoms), 3)))
    return velocities


def _amorphous_from_other_melt(e):
    """A melt given from a cell 5 % larger than the structure's."""
    atoms = e["structure"].get_ase()
    atoms.set_cell(atoms.cell[:] * 1.05, scale_atoms=True)
    builder = _amorphous_builder(e)
    builder.from_melt = {"trajectory": e["trajectory"], "structure": orm.StructureData(ase=atoms),
                         "velocities": _zero_velocities(atoms)}
    return _run(builder)


def _amorphous_quench_without_melt(e):
    builder = _amorphous_builder(e)
    builder.from_quench = {"trajectory": e["trajectory"], "structure": e["structure"]}
    return _run(builder)


def _amorphous_relax_from(e, with_quench: bool):
    """A relax continued from a structure with the atoms in another order (with a quench), or without a quench."""
    builder = _amorphous_builder(e)
    atoms = e["structure"].get_ase()
    builder.from_melt = {"trajectory": e["trajectory"], "structure": e["structure"],
                         "velocities": _zero_velocities(atoms)}
    if with_quench:
        builder.from_quench = {"trajectory": e["trajectory"], "structure": e["structure"]}
    builder.relax_from = orm.StructureData(ase=atoms[::-1] if with_quench else atoms)
    return _run(builder)


def _compression_builder(e, pressures=(0.0,), protocol_pressures=False, **inputs):
    """A fast compression builder; ``pressures`` set on the builder, or passed to get_builder_from_protocol."""
    from aiida_xesml.workflows.compression import CompressionWorkChain

    builder = CompressionWorkChain.get_builder_from_protocol(
        e["codes"]["pw"], e["structure"], list(pressures) if protocol_pressures else [0.0], protocol="fast")
    builder.pressures = orm.List(list(pressures))
    for key, value in inputs.items():
        builder[key] = value
    return builder


def _analysis_builder(e, structures=None, **inputs):
    from aiida_xesml.workflows.analysis import AnalysisWorkChain

    builder = AnalysisWorkChain.get_builder_from_protocol(
        e["spectra"], structures if structures is not None else {"snapshot_0": e["structure"]}, protocol="fast")
    for key, value in inputs.items():
        builder[key] = value
    return builder


def _analysis_without_snapshots(e):
    builder = _analysis_builder(e)
    builder.pop("structures")
    return _run(builder)


def _pipeline_builder(e, **overrides):
    from aiida_xesml.workflows.pipeline import PipelineWorkChain

    codes = e["codes"]
    return PipelineWorkChain.get_builder_from_protocol(codes["pw"], codes["projwfc"], e["structure"], [0.0, 20.0],
                                                       protocol="fast", overrides=overrides)


def _xesml(*args):
    from aiida.manage import get_manager

    from aiida_xesml.cli import cli

    profile = get_manager().get_profile().name
    return CliRunner().invoke(cli, ["-p", profile, *[str(arg) for arg in args]])


def _verdi_data(*args):
    from aiida_xesml.cli.cmd_data import data_xesml

    return CliRunner().invoke(data_xesml, [str(arg) for arg in args])


def _reconstruct_cli(e, path, *extra):
    return _xesml("reconstruct", path, "--eca", e["eca_node"].pk, "--reference-ev", REFERENCE_EV, *extra)


def _calc(name):
    """The calcfunction ``name`` of aiida_xesml.calculations, imported when the case runs."""
    import importlib

    return getattr(importlib.import_module(f"aiida_xesml.calculations.{name}"), name)


# ---------------------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------------------

CASES = [
    # ----- core functions (aiida_xesml.ml): ValueError naming the argument ------------------------------------
    Case("moments-nan-intensity", "core",
         lambda e: spectral_moments(e["grid"], np.where(e["grid"] > 0, np.nan, _gaussians(e["grid"]))),
         ValueError, r"`intensity` holds \d+ NaN or inf"),
    Case("moments-decreasing-energy", "core",
         lambda e: spectral_moments(e["grid"][::-1], _gaussians(e["grid"])), ValueError,
         r"`energy` must be strictly increasing"),
    Case("moments-shape-mismatch", "core",
         lambda e: spectral_moments(e["grid"], _gaussians(e["grid"])[:-3]), ValueError,
         r"`intensity` has 698 energy points but `energy` has 701"),
    Case("moments-window-reversed", "core",
         lambda e: spectral_moments(e["grid"], _gaussians(e["grid"]), windows={"kbpp": (-13, -24)}), ValueError,
         r"window `kbpp` = \(-13.0, -24.0\) eV needs lo < hi"),
    Case("moments-window-outside-grid", "core",
         lambda e: spectral_moments(e["grid"], _gaussians(e["grid"]), windows={"far": (10, 20)}), ValueError,
         r"window `far` .* lies outside the energy range"),
    Case("moments-empty-window", "core",
         lambda e: spectral_moments(e["grid"], np.where(e["grid"] < -12, 0.0, _gaussians(e["grid"]))), ValueError,
         r"window `kbpp` .* has no intensity"),
    Case("windows-as-string", "core", lambda e: check_windows("kbpp", "parameters['windows']"), ValueError,
         r"`parameters\['windows'\]` must be a mapping"),
    Case("grid-zero-step", "core", lambda e: energy_grid(-30, 5, 0), ValueError, r"`step` must be a positive number"),
    Case("grid-reversed", "core", lambda e: energy_grid(5, -30, 0.05), ValueError,
         r"`stop` \(-30.0\) must be larger than `start` \(5.0\)"),
    Case("site-spectra-unknown-alignment", "core",
         lambda e: site_spectra(np.zeros((1, 3)), np.ones((2, 1, 3)), [1.0], alignment="core-hole"), ValueError,
         r"`alignment` must be one of vbm, semicore, potential; got 'core-hole'"),
    Case("broaden-negative-fwhm", "core",
         lambda e: broaden(np.zeros((1, 2)), np.ones((1, 2)), e["grid"], fwhm=-1.0), ValueError,
         r"`fwhm` must be a positive number; got -1.0"),
    Case("coulomb-not-atoms", "core", lambda e: local_coulomb_matrix("GeO2"), ValueError,
         r"`atoms` must be an ase.Atoms; got str"),
    Case("coulomb-n-atoms-1", "core", lambda e: local_coulomb_matrix(rutile_geo2(), n_atoms=1), ValueError,
         r"`n_atoms` must be >= 2; got 1"),
    Case("coulomb-no-emitter", "core", lambda e: local_coulomb_matrix(rutile_geo2(), species="Si"), ValueError,
         r"no atom of `species` 'Si'"),
    Case("coulomb-overlapping-atoms", "core", lambda e: local_coulomb_matrix(_overlapping_atoms()), ValueError,
         r"`atoms` has overlapping atoms: atom 2 \(image \[0, 0, 0\]\) is closer than 1e-06 Å to centre 0"),
    Case("emulator-fit-nan", "core",
         lambda e: MLPEmulator().fit(np.where(np.eye(40, 10) > 0, np.nan, e["X"]), e["Y"]), ValueError,
         r"`X` holds 10 NaN or inf"),
    Case("emulator-fit-row-mismatch", "core", lambda e: MLPEmulator().fit(e["X"], e["Y"][:-1]), ValueError,
         r"`X` has 40 rows but `Y` has 39"),
    Case("emulator-predict-wrong-width", "core", lambda e: e["emulator"].predict(e["X"][:, :3]), ValueError,
         r"`X` has 3 features; the emulator expects 10"),
    Case("emulator-predict-unfitted", "core", _unfitted_predict, ValueError, r"not fitted yet"),
    Case("emulator-from-incomplete-arrays", "core", lambda e: MLPEmulator.from_arrays({"x_mean": np.zeros(3)}),
         ValueError, r"`arrays` lacks \['x_scale'"),
    Case("eca-too-many-components", "core", lambda e: ECA(e["emulator"], n_components=50).fit(e["X"], e["Y"]),
         ValueError, r"`n_components` must lie in \[1, 10\]"),
    Case("eca-inverse-wrong-targets", "core", lambda e: e["eca"].inverse(e["Y"][:, :5]), ValueError,
         r"`Y` has 5 targets; the emulator predicts 8"),
    Case("coulomb-to-distances-wrong-width", "core", lambda e: distances_from_coulomb(np.ones((2, 11)), n_atoms=4),
         ValueError, r"`features` must have n_atoms\*\(n_atoms\+1\)/2 = 10 columns"),
    Case("training-too-few-rows", "core", lambda e: core_train_emulator(e["X"][:2], e["Y"][:2]), ValueError,
         r"2 rows are too few"),
    Case("training-unknown-setting", "core",
         lambda e: core_train_emulator(e["X"], e["Y"], settings={"hidden_layers": [4]}), ValueError,
         r"unknown training setting\(s\) \['hidden_layers'\]"),
    Case("measured-unsorted-energy", "core",
         lambda e: shift_and_interpolate(e["grid"][::-1], _gaussians(e["grid"]), 0.0, e["grid"]), ValueError,
         r"`energy` is not strictly increasing"),
    Case("measured-nan-reference", "core",
         lambda e: shift_and_interpolate(e["grid"], _gaussians(e["grid"]), float("nan"), e["grid"]), ValueError,
         r"`reference_ev` must be a finite number"),
    Case("structure-file-too-large", "core",
         lambda e: limits.check_file(_sparse(e, "huge.cif", limits.MAX_STRUCTURE_FILE_BYTES + 1), "structure",
                                     "--structure"),
         ValueError, r"--structure .*huge.cif.*: the file has 10485761 bytes .* more than the limit of 10485760 bytes "
                     r"\(10 MB\) for a structure file; write the one structure"),
    Case("structure-too-many-atoms", "core", lambda e: limits.check_atom_count(5000, "the cell"), ValueError,
         r"the cell has 5000 atoms, more than the limit of 1000 atoms"),

    # ----- measured spectrum files (aiida_xesml.ml.measured.read_spectrum_file) --------------------------------
    Case("file-nan", "file", lambda e: _spectrum_file(e, "nan.txt", _good_lines(5) + ["3.0 nan"] + _good_lines(10, 4)),
         ValueError, r"nan.txt: line 6: NaN or inf value"),
    Case("file-not-monotonic", "file", lambda e: _spectrum_file(e, "unsorted.txt", _good_lines(12)[::-1]), ValueError,
         r"unsorted.txt: the energy axis is not strictly increasing: point 2"),
    Case("file-header-in-middle", "file",
         lambda e: _spectrum_file(e, "header.txt", _good_lines(6) + ["energy intensity"] + _good_lines(6, 10)),
         ValueError, r"header.txt: line 7: non-numeric line in the middle of the data"),
    Case("file-comment-after-data", "file",
         lambda e: _spectrum_file(e, "comment.txt", _good_lines(6) + ["# second block"] + _good_lines(6, 10)),
         ValueError, r"line 7: a comment/header line .* after the data started"),
    Case("file-too-large", "file",
         lambda e: read_spectrum_file(_sparse(e, "large.txt", limits.MAX_SPECTRUM_FILE_BYTES + 1)), ValueError,
         r"large.txt.*: the file has 5242881 bytes \(5 MB\), more than the limit of 5242880 bytes \(5 MB\) for a "
         r"spectrum file"),
    Case("file-one-column", "file", lambda e: _spectrum_file(e, "one.txt", [f"{k}" for k in range(12)]), ValueError,
         r"line 1: 1 column\(s\); expected 2"),
    Case("file-three-columns", "file", lambda e: _spectrum_file(e, "three.txt", [f"{k} 1 2" for k in range(12)]),
         ValueError, r"line 1: 3 column\(s\); expected 2"),
    Case("file-empty", "file", lambda e: read_spectrum_file(_write(e, "empty.txt", "")), ValueError,
         r"empty.txt.*: the file is empty; it must hold two columns"),
    Case("file-too-few-points", "file", lambda e: _spectrum_file(e, "short.txt", _good_lines(4)), ValueError,
         r"the spectrum has 4 data point\(s\); at least 10 are needed"),
    Case("file-binary-garbage", "file",
         lambda e: read_spectrum_file(_write(e, "garbage.bin", bytes(range(256)) * 8)), ValueError,
         r"garbage.bin: the file is not UTF-8 text \(byte 128"),
    Case("file-utf16", "file",
         lambda e: read_spectrum_file(_write(e, "utf16.txt", "\n".join(_good_lines(12)).encode("utf-16"))),
         ValueError, r"utf16.txt: the file is not UTF-8 text"),
    Case("file-is-a-directory", "file", lambda e: read_spectrum_file(e["folder"]), ValueError,
         r"is a directory; give a spectrum file"),
    Case("file-missing", "file", lambda e: read_spectrum_file(e["folder"] / "missing.txt"), ValueError,
         r"missing.txt.*: the file does not exist"),

    # ----- calcfunctions: the node is excepted with the message, and has no output ----------------------------
    Case("reconstruct-unknown-key", "calcfunction",
         lambda e: _calc("reconstruct")(e["eca_node"], e["spectra"], orm.Dict({"n_atoms": 4, "cutof": 2.3})),
         ValueError, r"unknown reconstruction parameters key\(s\) \['cutof'\]; allowed: .*'cutoff_angstrom'"),
    Case("reconstruct-n-atoms-text", "calcfunction",
         lambda e: _calc("reconstruct")(e["eca_node"], e["spectra"], orm.Dict({"n_atoms": "twenty"})),
         ValueError, r"`parameters\['n_atoms'\]` must be a whole number; got 'twenty'"),
    Case("reconstruct-n-atoms-mismatch", "calcfunction",
         lambda e: _calc("reconstruct")(e["eca_node"], e["spectra"], orm.Dict({"n_atoms": 20})),
         ValueError, r"`parameters\['n_atoms'\]` = 20 gives 210 descriptor features, but the ECA .* was fitted on 10"),
    Case("reconstruct-moment-order-7", "calcfunction",
         lambda e: _calc("reconstruct")(e["eca_node"], e["spectra"], orm.Dict({"n_atoms": 4, "moment_orders": [1, 7]})),
         ValueError, r"`parameters\['moment_orders'\]` must be in \[0, 3\]; got 7"),
    Case("reconstruct-negative-cutoff", "calcfunction",
         lambda e: _calc("reconstruct")(e["eca_node"], e["spectra"], orm.Dict({"n_atoms": 4, "cutoff_angstrom": -1})),
         ValueError, r"`parameters\['cutoff_angstrom'\]` must be a positive number; got -1"),
    Case("reconstruct-range-tolerance-zero", "calcfunction",
         lambda e: _calc("reconstruct")(e["eca_node"], e["spectra"], orm.Dict({"n_atoms": 4, "range_tolerance": 0})),
         ValueError, r"`parameters\['range_tolerance'\]` must be a positive number; got 0"),
    Case("reconstruct-linear-without-dataset", "calcfunction",
         lambda e: _calc("reconstruct")(e["eca_node"], e["spectra"], orm.Dict({"n_atoms": 4, "method": "linear"})),
         ValueError, r"method 'linear' is fitted on the training sites' moments: give the `dataset`"),
    Case("reconstruct-eca-is-spectra", "calcfunction",
         lambda e: _calc("reconstruct")(e["spectra"], e["spectra"], orm.Dict({"n_atoms": 4})),
         ValueError, r"input `eca` is a XesSpectraData \(pk \d+\), not a XesEcaData"),
    Case("measured-spectrum-reversed-grid", "calcfunction",
         lambda e: _calc("measured_spectrum")(e["measured"], orm.Float(REFERENCE_EV), orm.List([5.0, -30.0, 0.05])),
         ValueError, r"`stop` \(-30.0\) must be larger than `start` \(5.0\)"),
    Case("measured-spectrum-unsorted-xy", "calcfunction",
         lambda e: _calc("measured_spectrum")(e["unsorted"], orm.Float(REFERENCE_EV)),
         ValueError, r"`energy` is not strictly increasing"),
    Case("build-dataset-unmatched-rows", "calcfunction",
         lambda e: _calc("build_dataset")(e["descriptors"], e["moments"]),
         ValueError, r"2 row\(s\) of `moments` have no matching \(snapshot, site\) row in `descriptors`: \(5, 0\)"),
    Case("build-dataset-wrong-node", "calcfunction",
         lambda e: _calc("build_dataset")(e["moments"], e["moments"]),
         ValueError, r"input `descriptors` \(ArrayData, pk \d+\) has no array\(s\) \['descriptors'\]"),
    Case("compute-moments-reversed-window", "calcfunction",
         lambda e: _calc("compute_moments")(e["spectra"], orm.Dict({"windows": {"kbpp": [-13, -24]}})),
         ValueError, r"`parameters\['windows'\]`: window `kbpp` = \(-13.0, -24.0\) eV needs lo < hi"),
    Case("compute-moments-unknown-key", "calcfunction",
         lambda e: _calc("compute_moments")(e["spectra"], orm.Dict({"window": {"kbpp": [-24, -13]}})),
         ValueError, r"unknown moment parameters key\(s\) \['window'\]; allowed: \['windows'\]"),
    Case("train-emulator-text-layers", "calcfunction",
         lambda e: _calc("train_emulator")(e["dataset"], orm.Dict({"network_grid": {"hidden_layer_sizes": "abc"}})),
         ValueError, r"`parameters\['network_grid'\]\['hidden_layer_sizes'\]` must be a non-empty list of layer-width "
                     r"lists, e.g. \[\[32\], \[64, 64\]\]; got 'abc'"),
    Case("train-emulator-on-spectra", "calcfunction",
         lambda e: _calc("train_emulator")(e["spectra"], orm.Dict({})),
         ValueError, r"input `dataset` is a XesSpectraData .*, not a XesDatasetData"),
    Case("fit-eca-zero-components", "calcfunction",
         lambda e: _calc("fit_eca")(e["dataset"], e["emulator_node"], orm.Dict({"n_components": 0})),
         ValueError, r"The 'n_components' parameter of the ECA `parameters` must be an int in the range \[1, inf\)\. Got 0"),
    Case("featurize-n-atoms-1", "calcfunction",
         lambda e: _calc("featurize")(orm.Dict({"n_atoms": 1}), snapshot_0=e["structure"]),
         ValueError, r"`parameters\['n_atoms'\]` must be >= 2; got 1"),
    Case("featurize-badly-named-snapshot", "calcfunction",
         lambda e: _calc("featurize")(orm.Dict({}), frame_a=e["structure"]),
         ValueError, r"inputs \['frame_a'\] are not named `snapshot_<i>`"),

    # ----- work chains: a 3xx exit code with a message, before any child runs -------------------------------
    Case("spectrum-unknown-alignment", "workchain",
         lambda e: _run(_spectrum_builder(e, {"alignment": "core-hole"})), 306, r"unknown alignment `core-hole`"),
    Case("spectrum-unknown-parameter", "workchain",
         lambda e: _run(_spectrum_builder(e, {"fwmh": 1.0})), 306, r"unknown parameter\(s\) \['fwmh'\]"),
    Case("spectrum-overlapping-atoms", "workchain",
         lambda e: _run(_spectrum_builder(e, structure=orm.StructureData(ase=_overlapping_atoms()))), 302,
         r"are 0.000 Å apart \(overlapping"),
    Case("spectrum-missing-pseudo", "workchain", _spectrum_missing_pseudo, 303, r"no pseudopotential for kind\(s\) O"),
    Case("spectrum-potential-without-pp", "workchain",
         lambda e: _run(_spectrum_builder(e, {"alignment": "potential"})), 304, r"needs pp.x"),
    Case("spectrum-text-fwhm", "workchain", lambda e: _run(_spectrum_builder(e, {"fwhm": "wide"})), 306,
         r"fwhm, lorentzian_fwhm, potential_radius and potential_offset must be numbers"),
    Case("spectra-no-snapshots", "workchain", _spectra_without_snapshots, 301, r"Give either `snapshots` or"),
    Case("spectra-label-count", "workchain", lambda e: _run(_spectra_builder(e, labels=[0.0, 1.0])), 302,
         r"2 labels for 1 snapshots"),
    Case("spectra-no-emitter", "workchain", lambda e: _run(_spectra_builder(e, structures=[_silica(e)])), 303,
         r"Snapshot 0: the structure has no `Ge` atom"),
    Case("md-zero-steps", "workchain", lambda e: _run(_md_builder(e, nstep=0)), 301, r"nstep=0"),
    Case("md-negative-velocity-seed", "workchain", lambda e: _run(_md_seeded(e, -1)), 306,
         r"velocity_seed must be an integer >= 0; got -1"),
    Case("md-ramp-with-vc-md", "workchain",
         lambda e: _run(_md_builder(e, nstep=1, final_temperature_k=100.0, pressure_gpa=5.0)), 304,
         r"final_temperature_k \(100.0 K\) needs .* md in a fixed cell \(no pressure_gpa\) and a thermostat that "
         r"follows tempw \(berendsen, .*\); got thermostat berendsen, pressure_gpa given"),
    Case("amorphous-quench-warms", "workchain",
         lambda e: _run(_amorphous_builder(e, final_temperature_k=4000.0)), 301,
         r"need 0 <= final_temperature_k < melt_temperature_k; got 4000 K and 3000 K"),
    Case("amorphous-one-melt-step", "workchain", lambda e: _run(_amorphous_builder(e, nstep_melt=1)), 301,
         r"nstep_melt must be >= 2 and nstep_quench >= 1; got 1 and 4"),
    Case("amorphous-no-thermostat", "workchain",
         lambda e: _run(_amorphous_builder(e, md={"thermostat": "not_controlled"})), 301,
         r"md.thermostat is not_controlled; a melt and a quench need a thermostat"),
    Case("amorphous-quench-without-melt", "workchain", _amorphous_quench_without_melt, 301,
         r"from_quench is given without from_melt; give the melt it was quenched from as well"),
    Case("amorphous-melt-of-another-cell", "workchain", _amorphous_from_other_melt, 302,
         r"from_melt.structure has another cell than structure \(the melt and quench keep the cell\)"),
    Case("amorphous-relax-from-without-quench", "workchain", lambda e: _amorphous_relax_from(e, with_quench=False),
         301, r"relax_from is given without from_quench; give the quench whose relax it continues as well"),
    Case("amorphous-relax-from-other-atoms", "workchain", lambda e: _amorphous_relax_from(e, with_quench=True),
         302, r"relax_from has other atoms than structure \(in order\); give the last structure of a relax"),
    Case("compression-negative-pressure", "workchain",
         lambda e: _run(_compression_builder(e, pressures=[-5.0, 10.0])), 301, r"negative pressures \[-5.0\] GPa"),
    Case("compression-builder-inf-pressure", "workchain",
         lambda e: _compression_builder(e, pressures=[0.0, float("inf")], protocol_pressures=True), ValueError,
         r"`pressures` must be finite numbers in GPa; got \[0.0, inf\]"),
    Case("compression-no-production", "workchain",
         lambda e: _run(_compression_builder(e, nstep_production=orm.Int(0))), 304, r"nstep_production >= 1"),
    Case("compression-negative-corrections", "workchain",
         lambda e: _run(_compression_builder(e, max_cell_corrections=orm.Int(-1))), 304,
         r"max_cell_corrections must be >= 0, pressure_tolerance_gpa and bulk_modulus_gpa > 0; got -1"),
    Case("analysis-no-snapshots", "workchain", _analysis_without_snapshots, 301, r"Give either `snapshots` or"),
    Case("analysis-rows-without-snapshot", "workchain",
         lambda e: _run(_analysis_builder(e, structures={"snapshot_3": e["structure"]})), 302,
         r"spectra rows refer to snapshot 0, which is not among the given snapshots"),
    Case("analysis-too-few-samples", "workchain",
         lambda e: _run(_analysis_builder(e, min_samples_per_label=orm.Int(1000))), 303, r"fewer than 1000 samples"),
    Case("analysis-too-many-components", "workchain",
         lambda e: _run(_analysis_builder(e, descriptor_parameters=orm.Dict({"n_atoms": 3}),
                                          eca_parameters=orm.Dict({"n_components": 7}))), 304,
         r"n_components = 7, but it must be an integer in \[1, 6\]"),
    Case("analysis-emulator-mismatch", "workchain",
         lambda e: _run(_analysis_builder(e, emulator=e["emulator_node"])), 305,
         r"it was trained on 10 descriptor features \(distance ordering\) for 8 moments, but this data has 210 "
         r"features \(n_atoms = 20, species ordering\)"),
    Case("analysis-text-layers", "workchain",
         lambda e: _run(_analysis_builder(
             e, training_parameters=orm.Dict({"network_grid": {"hidden_layer_sizes": "abc"}}))), 306,
         r"training_parameters: `parameters\['network_grid'\]\['hidden_layer_sizes'\]` must be a non-empty list of "
         r"layer-width lists"),
    Case("analysis-unknown-moment-key", "workchain",
         lambda e: _run(_analysis_builder(e, moment_parameters=orm.Dict({"window": {"kb2": [-12, 2]}}))), 306,
         r"unknown moment_parameters key\(s\) \['window'\]; allowed: \['windows'\]"),
    Case("analysis-reversed-window", "workchain",
         lambda e: _run(_analysis_builder(e, moment_parameters=orm.Dict({"windows": {"kb2": [2, -12]}}))), 306,
         r"window `kb2` = \(2.0, -12.0\) eV needs lo < hi"),
    Case("analysis-bad-reconstruction-cutoff", "workchain",
         lambda e: _run(_analysis_builder(e, reconstruction_parameters=orm.Dict({"cutoff_angstrom": 0}))), 306,
         r"reconstruction_parameters: `parameters\['cutoff_angstrom'\]` must be a positive number"),
    Case("pipeline-unknown-alignment", "workchain",
         lambda e: _run(_pipeline_builder(e, spectra={"parameters": {"alignment": "core-hole"}})), 302,
         r"unknown alignment `core-hole`"),

    # ----- CLI: a one-line error, no traceback, nothing stored ----------------------------------------------
    Case("cli-reconstruct-unknown-pk", "cli",
         lambda e: _xesml("reconstruct", e["good_file"], "--eca", 987654321, "--reference-ev", REFERENCE_EV), "cli",
         r"no node with pk 987654321: an XesEcaData \(xesml.eca\) expected"),
    Case("cli-reconstruct-wrong-node", "cli",
         lambda e: _xesml("reconstruct", e["good_file"], "--eca", e["spectra"].pk, "--reference-ev", REFERENCE_EV),
         "cli", r"node \d+ is a XesSpectraData, not an XesEcaData"),
    Case("cli-reconstruct-oversized-file", "cli",
         lambda e: _reconstruct_cli(e, _sparse(e, "big.txt", limits.MAX_SPECTRUM_FILE_BYTES + 100)), "cli",
         r"big.txt.*5242980 bytes .* more than the limit of 5242880 bytes \(5 MB\)"),
    Case("cli-reconstruct-binary-file", "cli",
         lambda e: _reconstruct_cli(e, _write(e, "binary.dat", b"\x89PNG\r\n\x1a\n" + bytes(200))), "cli",
         r"binary.dat: the file is not UTF-8 text"),
    Case("cli-reconstruct-bad-moment-orders", "cli",
         lambda e: _reconstruct_cli(e, e["good_file"], "--moment-orders", "1,9"), "cli",
         r"--moment-orders must be numbers among 0, 1, 2, 3; got '1,9'"),
    Case("cli-reconstruct-eca-without-descriptor", "cli",
         lambda e: _xesml("reconstruct", e["good_file"], "--eca", e["eca_without_descriptor"].pk, "--reference-ev",
                          REFERENCE_EV), "cli",
         r"XesEcaData \d+ was fitted on 10 descriptor features, but its descriptor settings give n_atoms = 20"),
    Case("cli-reconstruct-reference-off-grid", "cli",
         lambda e: _xesml("reconstruct", e["good_file"], "--eca", e["eca_node"].pk, "--reference-ev", 0), "cli",
         r"does not overlap the grid"),
    Case("cli-launch-oversized-structure", "cli",
         lambda e: _xesml("launch", "spectra", "--structure",
                          _sparse(e, "big.cif", limits.MAX_STRUCTURE_FILE_BYTES + 1)), "cli",
         r"--structure .*big.cif.*: the file has 10485761 bytes .* more than the limit of 10485760 bytes \(10 MB\)"),
    Case("cli-launch-too-many-atoms", "cli",
         lambda e: _xesml("launch", "spectra", "--structure", _write(e, "many.xyz", _extended_xyz(1200))), "cli",
         r"many.xyz' has 1200 atoms, more than the limit of 1000 atoms"),
    Case("cli-launch-huge-supercell", "cli",
         lambda e: _xesml("launch", "compression", "--builtin", "rutile", "--supercell", 10, 10, 10), "cli",
         r"--supercell 10 10 10 has 6000 atoms, more than the limit of 1000 atoms"),
    Case("cli-launch-device-as-structure", "cli", lambda e: _xesml("launch", "spectra", "--structure", "/dev/null"),
         "cli", r"/dev/null' is not a regular file"),
    Case("cli-launch-garbage-structure", "cli",
         lambda e: _xesml("launch", "spectra", "--structure", _write(e, "garbage.cif", "data_x\n_cell_length_a oops\n")),
         "cli", r"cannot read a structure from '.*garbage\.cif': StopIteration"),
    Case("cli-launch-analysis-wrong-nodes", "cli",
         lambda e: _xesml("launch", "analysis", "--spectra", e["eca_node"].pk, "--snapshots", e["trajectory"].pk),
         "cli", r"node \d+ is a XesEcaData, not an XesSpectraData \(--spectra\)"),
    Case("cli-data-show-unknown-pk", "cli", lambda e: _verdi_data("spectra", "show", 987654321), "cli",
         r"Invalid value for 'PK': no Node found with ID<987654321>"),
    Case("cli-data-show-wrong-type", "cli", lambda e: _verdi_data("emulator", "show", e["spectra"].pk), "cli",
         r"is a XesSpectraData .* but this command needs an `xesml.emulator` node"),
    Case("cli-data-export-existing-output", "cli",
         lambda e: _verdi_data("spectra", "export", e["spectra"].pk, "-o", e["good_file"]), "cli",
         r"already exists; use --force to overwrite it"),
    Case("cli-data-plot-not-png", "cli",
         lambda e: _verdi_data("spectra", "plot", e["spectra"].pk, "-o", e["folder"] / "figure.pdf"), "cli",
         r"must be a .png file"),
]


# ---------------------------------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------------------------------

def _node_ids() -> set[int]:
    return set(orm.QueryBuilder().append(orm.Node, project="id").all(flat=True))


def _new_nodes(before: set[int]) -> list:
    return [orm.load_node(pk) for pk in sorted(_node_ids() - before)]


def _check_process_left_nothing_half_way(process, new) -> None:
    """Only the process and its own inputs are new; nothing was called or created by it."""
    inputs = {link.node.pk for link in process.base.links.get_incoming().all()}
    extra = [f"{type(node).__name__} {node.pk}" for node in new if node.pk != process.pk and node.pk not in inputs]
    assert not extra, f"nodes stored besides {type(process).__name__} {process.pk} and its inputs: {extra}"
    outgoing = process.base.links.get_outgoing().all()
    assert not outgoing, f"{process.pk} has outgoing links: {[(l.link_label, l.node) for l in outgoing]}"
    assert process.pk in {node.pk for node in new}


def _params(cases):
    params = []
    for case in cases:
        marks = [pytest.mark.xfail(strict=True, reason=case.known_gap)] if case.known_gap else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(env, case):
    before = _node_ids()

    if case.surface in ("core", "file"):
        with pytest.raises(case.expect, match=case.pattern):
            case.trigger(env)
        assert not _new_nodes(before)

    elif case.surface == "calcfunction":
        with pytest.raises(case.expect, match=case.pattern):
            case.trigger(env)
        new = _new_nodes(before)
        calcs = [node for node in new if isinstance(node, orm.CalcFunctionNode)]
        assert len(calcs) == 1, new
        calc = calcs[0]
        assert calc.is_excepted and calc.exit_status is None
        assert re.search(case.pattern, calc.exception or ""), calc.exception
        _check_process_left_nothing_half_way(calc, new)

    elif case.surface == "workchain" and isinstance(case.expect, type):  # refused while building: nothing stored
        with pytest.raises(case.expect, match=case.pattern):
            case.trigger(env)
        assert not _new_nodes(before)

    elif case.surface == "workchain":
        node = case.trigger(env)
        assert isinstance(node, orm.WorkChainNode)
        assert node.is_failed and node.exit_status == case.expect, (node.process_state, node.exit_status,
                                                                     node.exit_message, node.exception)
        assert 300 <= node.exit_status < 400
        assert re.search(case.pattern, node.exit_message), node.exit_message
        assert not node.called, f"children were launched for bad input: {node.called}"
        new = _new_nodes(before)
        assert not [n for n in new if isinstance(n, orm.CalcJobNode)]
        _check_process_left_nothing_half_way(node, new)

    else:
        assert case.surface == "cli"
        result = case.trigger(env)
        assert_fails(result)
        assert re.search(case.pattern, result.output), result.output
        assert not _new_nodes(before)


#: The size of the table: a case lost in an edit (or added) must show here.
N_CASES = 111


def test_the_table_has_its_109_cases_across_every_surface():
    counts = Counter(case.surface for case in CASES)
    assert set(counts) == set(SURFACES), counts
    assert len(CASES) == N_CASES
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"


@pytest.fixture(scope="module", autouse=True)
def _print_the_count(request):
    yield
    counts = Counter(case.surface for case in CASES)
    gaps = sum(1 for case in CASES if case.known_gap)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    line = (f"bad-input cases: {len(CASES)} across {len(counts)} surfaces ("
            + ", ".join(f"{surface} {counts[surface]}" for surface in SURFACES) + ")"
            + (f"; {gaps} known gap(s) as strict xfail" if gaps else ""))
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)
