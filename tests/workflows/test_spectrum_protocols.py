"""The spectrum protocols as builders: what each one sets, checked without running QE."""

import pytest

from aiida_xesml.workflows.spectrum import SpectrumWorkChain, check_spectrum_parameters, spectrum_parameters


@pytest.fixture
def builder_for(qe_codes, pseudo_family, rutile_structure):
    def factory(protocol, **kwargs):
        return SpectrumWorkChain.get_builder_from_protocol(qe_codes["pw"], qe_codes["projwfc"], rutile_structure,
                                                           protocol=protocol, **kwargs)

    return factory


def test_the_measured_protocol_adds_the_ge_1s_lifetime_to_the_balanced_settings(builder_for, rutile_structure):
    measured, balanced = builder_for("measured"), builder_for("balanced")
    assert measured.parameters.get_dict() == {"lorentzian_fwhm": 1.96}
    assert "lorentzian_fwhm" not in balanced.parameters.get_dict()
    # everything else is the balanced protocol's: the same SCF (cutoffs, Γ) and projwfc.x inputs
    assert measured.scf.pw.parameters.get_dict() == balanced.scf.pw.parameters.get_dict()
    assert measured.scf.kpoints.get_kpoints_mesh() == balanced.scf.kpoints.get_kpoints_mesh()
    assert measured.projwfc.parameters.get_dict() == balanced.projwfc.parameters.get_dict()
    # and the work chain's own check accepts it, keeping the default Gaussian for the resolution
    checked = spectrum_parameters(measured.parameters)
    assert check_spectrum_parameters(checked, rutile_structure) is None
    assert checked["lorentzian_fwhm"] == pytest.approx(1.96) and checked["fwhm"] == pytest.approx(1.0)


def test_an_override_sets_the_resolution_beside_the_lifetime(builder_for):
    builder = builder_for("measured", overrides={"parameters": {"fwhm": 0.6}})
    assert builder.parameters.get_dict() == {"lorentzian_fwhm": 1.96, "fwhm": 0.6}


def test_every_protocol_has_a_description():
    protocols = SpectrumWorkChain.get_available_protocols()
    assert {"fast", "balanced", "measured", "stringent"} <= set(protocols)
    assert all(isinstance(entry["description"], str) and entry["description"] for entry in protocols.values())
