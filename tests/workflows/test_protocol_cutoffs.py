"""Plane-wave cutoffs come from the pseudopotential family (issue 17): a protocol names a stringency, the
family recommends the cutoffs for it, and explicit ``ecutwfc``/``ecutrho`` overrides win. Builders only,
no QE run."""

from __future__ import annotations

import pytest
from aiida import orm

from aiida_xesml.constants import CUTOFFS_RY, SEMICORE_CUTOFFS_RY, SEMICORE_FAMILY
from aiida_xesml.ml.structures import rutile_geo2
from aiida_xesml.workflows.amorphous import AmorphousWorkChain
from aiida_xesml.workflows.compression import CompressionWorkChain
from aiida_xesml.workflows.md import MdWorkChain
from aiida_xesml.workflows.spectrum import SpectrumWorkChain

PROTOCOLS = ("fast", "balanced", "stringent")


def cutoffs(namespace) -> tuple[float, float]:
    """(ecutwfc, ecutrho) of a PwBaseWorkChain namespace of a builder."""
    system = namespace["pw"]["parameters"].get_dict()["SYSTEM"]
    return system["ecutwfc"], system["ecutrho"]


@pytest.fixture
def structure(aiida_profile):
    return orm.StructureData(ase=rutile_geo2())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_work_chain_uses_the_family_cutoffs_of_its_protocol(qe_codes, pseudo_family, structure, protocol):
    pw, projwfc = qe_codes["pw"], qe_codes["projwfc"]
    expected = CUTOFFS_RY[protocol]
    assert cutoffs(MdWorkChain.get_builder_from_protocol(pw, structure, protocol=protocol).md) == expected
    assert cutoffs(SpectrumWorkChain.get_builder_from_protocol(pw, projwfc, structure, protocol=protocol).scf) == expected
    compression = CompressionWorkChain.get_builder_from_protocol(pw, structure, [0.0, 5.0], protocol=protocol)
    assert cutoffs(compression.vc_relax["base_relax"]) == expected
    assert cutoffs(compression.md.md) == expected
    # The glass: a cheaper MD (one stringency lower), re-relaxed at the protocol's own cutoff.
    glass = AmorphousWorkChain.get_builder_from_protocol(pw, structure, protocol=protocol)
    cheaper = {"fast": "fast", "balanced": "fast", "stringent": "balanced"}[protocol]
    assert cutoffs(glass.md.md) == CUTOFFS_RY[cheaper]
    assert cutoffs(glass.relax["base_relax"]) == expected


def test_another_family_brings_its_own_cutoffs(qe_codes, structure):
    """The semicore family recommends higher cutoffs than the Debian one: a run with it gets them without
    the caller passing them (before, the protocol's numbers won)."""
    from aiida_xesml.pseudos.families import ensure_semicore_family

    ensure_semicore_family()
    builder = SpectrumWorkChain.get_builder_from_protocol(
        qe_codes["pw"], qe_codes["projwfc"], structure, protocol="fast", pseudo_family=SEMICORE_FAMILY)
    assert cutoffs(builder.scf) == SEMICORE_CUTOFFS_RY["fast"] != CUTOFFS_RY["fast"]


def test_explicit_cutoffs_win_over_the_family(qe_codes, pseudo_family, structure):
    overrides = {"md": {"pw": {"parameters": {"SYSTEM": {"ecutwfc": 33.0, "ecutrho": 264.0}}}}}
    builder = MdWorkChain.get_builder_from_protocol(qe_codes["pw"], structure, protocol="fast", overrides=overrides)
    assert cutoffs(builder.md) == (33.0, 264.0)


def test_a_stringency_the_family_lacks_is_refused_by_name(qe_codes, pseudo_family, structure):
    message = r"has no cutoffs for stringency `loose`; give `cutoffs` as one of fast, balanced, stringent"
    with pytest.raises(ValueError, match=message):
        MdWorkChain.get_builder_from_protocol(qe_codes["pw"], structure, protocol="fast",
                                              overrides={"md": {"cutoffs": "loose"}})


def test_a_family_that_is_not_installed_is_refused_by_name(qe_codes, structure):
    with pytest.raises(ValueError, match=r"pseudopotential family `no-such-family` is not installed; run `aiida-xesml setup`"):
        SpectrumWorkChain.get_builder_from_protocol(qe_codes["pw"], qe_codes["projwfc"], structure, protocol="fast",
                                                    pseudo_family="no-such-family")


#: The work chains whose protocol file has a ``meta_inputs_schema``, each with a namespace of pw.x inputs in
#: which a misspelling must be caught too. xesml.spectra reads xesml.spectrum's file and hands its overrides
#: to xesml.spectrum's builder; xesml.pipeline hands its parts to the chains below.
CHECKED = {"xesml.md": "md", "xesml.spectrum": "scf", "xesml.core_hole": "scf", "xesml.compression": "vc_relax",
           "xesml.amorphous": "relax", "xesml.analysis": None}


def work_chain(name: str):
    from importlib.metadata import entry_points

    return next(ep for ep in entry_points(group="aiida.workflows") if ep.name == name).load()


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_a_protocol_passes_its_own_override_check_and_a_misspelling_warns(aiida_profile, name):
    """Every protocol's full inputs, given back as overrides, raise no warning (the schema knows every key the
    protocols use); a misspelled key, at the top and in a pw.x namespace, is named in a warning."""
    import warnings

    cls = work_chain(name)
    assert "meta_inputs_schema" in cls._load_protocol_file()
    for protocol in cls.get_available_protocols():
        inputs = cls.get_protocol_inputs(protocol)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cls.get_protocol_inputs(protocol, overrides=inputs)
    namespace = CHECKED[name]
    misspelled = {"protocl_typo": 1, **({namespace: {"cutofs": "fast"}} if namespace else {})}
    with pytest.warns(UserWarning) as caught:
        cls.get_protocol_inputs(overrides=misspelled)
    messages = {str(warning.message) for warning in caught}
    expected = {"protocl_typo", *([f"{namespace}.cutofs"] if namespace else [])}
    assert messages == {f"Found unrecognised key in overrides: {key}" for key in expected}
