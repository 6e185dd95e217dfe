"""Every work chain's builder, per protocol, against a reviewed snapshot (``data_regression``, as
aiida-quantumespresso checks its own protocols).

A change to a protocol file, to the family's recommended cutoffs or to a builder's logic shows up here as a
diff of plain inputs (``pytest --force-regen`` writes the new snapshot, for review in the commit). Builders
only, no QE run. Nodes are written as what they hold: a Dict or List as its content, a base type as its
value, a structure as its formula, a pseudopotential as its file name, a code as its label. The number of
MPI processes that aiida-quantumespresso's builders copy from the computer's default (``aiida-xesml setup``
sets it to the machine's core count) is written as ``computer default``, so the snapshots do not depend
on the machine.
"""

from __future__ import annotations

import pytest
from aiida import orm

from aiida_xesml.ml.structures import quartz_geo2, rutile_geo2
from aiida_xesml.workflows.amorphous import AmorphousWorkChain
from aiida_xesml.workflows.analysis import AnalysisWorkChain
from aiida_xesml.workflows.compression import CompressionWorkChain
from aiida_xesml.workflows.md import MdWorkChain
from aiida_xesml.workflows.pipeline import PipelineWorkChain
from aiida_xesml.workflows.spectra import SpectraWorkChain
from aiida_xesml.workflows.spectrum import SpectrumWorkChain

PRESSURES = [0.0, 10.0]  # GPa


def serialize(value, mpiprocs_default: int | None = None):
    """The builder (or any of its values) as plain data: nested dicts in key order, lists, numbers, strings;
    ``num_mpiprocs_per_machine`` equal to ``mpiprocs_default`` as ``computer default``."""
    from collections.abc import Mapping

    from aiida.plugins import DataFactory

    if isinstance(value, Mapping):
        items = ((key, serialize(item, mpiprocs_default)) for key, item in sorted(value.items()))
        data = {key: item for key, item in items if item not in ({}, None)}
        if mpiprocs_default is not None and data.get("num_mpiprocs_per_machine") == mpiprocs_default:
            data["num_mpiprocs_per_machine"] = "computer default"
        return data
    if isinstance(value, (list, tuple)):
        return [serialize(item, mpiprocs_default) for item in value]
    if isinstance(value, orm.Dict):
        return serialize(value.get_dict())
    if isinstance(value, orm.List):
        return serialize(value.get_list())
    if isinstance(value, orm.BaseType):
        return value.value
    if isinstance(value, orm.StructureData):
        return f"StructureData {value.get_formula(mode='hill')}"
    if isinstance(value, orm.KpointsData):
        try:
            mesh, offset = value.get_kpoints_mesh()
            return {"mesh": list(mesh), "offset": list(offset)}
        except AttributeError:  # an explicit list of k-points
            return {"kpoints": value.get_kpoints().tolist()}
    if isinstance(value, DataFactory("pseudo.upf")):
        return value.filename
    if isinstance(value, orm.AbstractCode):
        return f"code {value.label}"
    if isinstance(value, orm.Data):
        return type(value).__name__
    return value


@pytest.fixture
def structure(aiida_profile):
    return orm.StructureData(ase=rutile_geo2())


def protocols(cls):
    return sorted(cls.get_available_protocols())


BUILDERS = {
    "md": (MdWorkChain, lambda codes, structure, protocol: MdWorkChain.get_builder_from_protocol(
        codes["pw"], structure, protocol=protocol)),
    "compression": (CompressionWorkChain, lambda codes, structure, protocol: CompressionWorkChain
                    .get_builder_from_protocol(codes["pw"], structure, PRESSURES, protocol=protocol)),
    "spectrum": (SpectrumWorkChain, lambda codes, structure, protocol: SpectrumWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], structure, protocol=protocol)),
    "spectra": (SpectrumWorkChain, lambda codes, structure, protocol: SpectraWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], [structure, orm.StructureData(ase=quartz_geo2())], protocol=protocol)),
    "amorphous": (AmorphousWorkChain, lambda codes, structure, protocol: AmorphousWorkChain
                  .get_builder_from_protocol(codes["pw"], structure, protocol=protocol)),
    "analysis": (AnalysisWorkChain, lambda codes, structure, protocol: AnalysisWorkChain
                 .get_builder_from_protocol(protocol=protocol)),
    "pipeline": (PipelineWorkChain, lambda codes, structure, protocol: PipelineWorkChain.get_builder_from_protocol(
        codes["pw"], codes["projwfc"], structure, PRESSURES, protocol=protocol)),
}
CASES = [(name, protocol) for name, (cls, _) in sorted(BUILDERS.items()) for protocol in protocols(cls)]


@pytest.mark.parametrize(("name", "protocol"), CASES, ids=[f"{name}-{protocol}" for name, protocol in CASES])
def test_builder_from_protocol(qe_codes, pseudo_family, structure, data_regression, name, protocol):
    _, make = BUILDERS[name]
    default = qe_codes["pw"].computer.get_default_mpiprocs_per_machine()
    data_regression.check(serialize(make(qe_codes, structure, protocol), default), basename=f"{name}_{protocol}")


def test_the_snapshot_serializer_keeps_what_a_builder_holds(pseudo_family, structure):
    """The serializer drops nothing a protocol sets: values, nested namespaces, nodes by what they hold."""
    upf = next(iter(pseudo_family.nodes))
    data = serialize({"b": orm.Dict({"x": {"y": 1.5}}), "a": [orm.Int(2), orm.Bool(False)], "s": structure,
                      "p": upf, "empty": {}, "l": orm.List([1, 2]),
                      "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 3}}, mpiprocs_default=3)
    assert data == {"a": [2, False], "b": {"x": {"y": 1.5}}, "l": [1, 2], "p": upf.filename,
                    "resources": {"num_machines": 1, "num_mpiprocs_per_machine": "computer default"},
                    "s": "StructureData Ge2O4"}
    assert list(data) == sorted(data)
    assert serialize({"num_mpiprocs_per_machine": 1}, mpiprocs_default=2) == {"num_mpiprocs_per_machine": 1}
