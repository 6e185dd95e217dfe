"""Reading projwfc.x's atomic_proj.xml (full-precision projections)."""

import numpy as np
import pytest

from aiida_xesml.ml.atomic_proj import RY_TO_EV, check_projection_listing, read_atomic_proj, read_projwfc_states

# Two k-points, two bands, two states; numbers chosen so that |re + i im|² is easy to check by hand.
XML = """<PROJECTIONS>
  <HEADER NUMBER_OF_BANDS="2" NUMBER_OF_K-POINTS="2" NUMBER_OF_SPIN_COMPONENTS="1" NUMBER_OF_ATOMIC_WFC="2"
          NUMBER_OF_ELECTRONS="4.0" FERMI_ENERGY="0.1"/>
  <EIGENSTATES>
    <K-POINT Weight="1.5"> 0.0 0.0 0.0 </K-POINT>
    <E> -1.0 -0.5 </E>
    <PROJS>
      <ATOMIC_WFC index="1" spin="1"> 0.6 0.8
        0.0 0.5 </ATOMIC_WFC>
      <ATOMIC_WFC index="2" spin="1"> 0.3 0.4
        1.0 0.0 </ATOMIC_WFC>
    </PROJS>
    <K-POINT Weight="0.5"> 0.5 0.0 0.0 </K-POINT>
    <E> -0.9 -0.25 </E>
    <PROJS>
      <ATOMIC_WFC index="2" spin="1"> 0.0 0.1
        0.2 0.0 </ATOMIC_WFC>
      <ATOMIC_WFC index="1" spin="1"> 0.5 0.5
        -0.6 0.0 </ATOMIC_WFC>
    </PROJS>
  </EIGENSTATES>
</PROJECTIONS>
"""


def test_weights_eigenvalues_and_k_weights():
    result = read_atomic_proj(XML)
    np.testing.assert_allclose(result.k_weights, [1.5, 0.5])
    np.testing.assert_allclose(result.eigenvalues_ev, np.array([[-1.0, -0.5], [-0.9, -0.25]]) * RY_TO_EV)
    assert result.weights.shape == (2, 2, 2)
    # state 1: k1 |0.6+0.8i|² = 1, |0.5i|² = 0.25; k2 (listed second there) 0.5, 0.36
    np.testing.assert_allclose(result.weights[0], [[1.0, 0.25], [0.5, 0.36]])
    np.testing.assert_allclose(result.weights[1], [[0.25, 1.0], [0.01, 0.04]])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[: len(text) // 2], "not well-formed"),
        (lambda text: text.replace("<E> -0.9 -0.25 </E>", "<E> -0.9 </E>"), "eigenvalues of k-point 2 has 1"),
        (lambda text: text.replace('NUMBER_OF_SPIN_COMPONENTS="1"', 'NUMBER_OF_SPIN_COMPONENTS="2"'), "spin"),
        (lambda text: text.replace('NUMBER_OF_K-POINTS="2"', 'NUMBER_OF_K-POINTS="3"'), "expected 3 each"),
        (lambda text: text.replace("<HEADER", "<HEAD"), "no <PROJECTIONS><HEADER>"),
        (lambda text: text.replace("1.0 0.0 </ATOMIC_WFC>", "1.0 nan </ATOMIC_WFC>"), "non-finite"),
    ],
)
def test_damaged_files_are_value_errors(damage, message):
    with pytest.raises(ValueError, match=message):
        read_atomic_proj(damage(XML))


# What projwfc.x 6.7 prints (collinear): the state list in the header, then per k-point the
# eigenvalues with the largest projections (three decimals) and |psi|^2.
STDOUT_HEADER = """
     Atomic states used for projection
     (read from pseudopotential files):

     state #   1: atom   1 (Ge ), wfc  1 (l=0 m= 1)
     state #   2: atom   1 (Ge ), wfc  2 (l=1 m= 1)
     state #   3: atom   2 (O  ), wfc  1 (l=1 m= 3)
"""
LISTING = """ k =   0.0000000000  0.0000000000  0.0000000000
==== e(   1) =   -13.60569 eV ==== 
     psi = 0.600*[#   1]+0.400*[#   2]
    |psi|^2 = 1.000
==== e(   2) =    -6.80285 eV ==== 
     psi = 0.700*[#   3]+0.200*[#   1]
          +0.100*[#   2]
    |psi|^2 = 1.000

 k =   0.5000000000 -0.5000000000  0.0000000000
==== e(   1) =   -12.24512 eV ==== 
     psi = 
    |psi|^2 = 0.000
==== e(   2) =    -3.40142 eV ==== 
     psi = 1.000*[#   3]
    |psi|^2 = 1.000

"""


def test_state_list_gives_atom_kind_and_angular_momentum():
    states = read_projwfc_states(STDOUT_HEADER)
    np.testing.assert_array_equal(states.atom_index, [0, 0, 1])
    assert states.kind == ["Ge", "Ge", "O"]
    np.testing.assert_array_equal(states.l, [0, 1, 1])
    np.testing.assert_array_equal(states.m, [1, 1, 3])
    with pytest.raises(ValueError, match="no atomic states"):
        read_projwfc_states("JOB DONE")
    with pytest.raises(ValueError, match="1..n in order"):
        read_projwfc_states(STDOUT_HEADER.replace("state #   2", "state #   7"))


def test_a_well_formed_listing_gives_its_printed_eigenvalues():
    printed = check_projection_listing(LISTING, n_k=2, n_bands=2)
    np.testing.assert_allclose(printed, [[-13.60569, -6.80285], [-12.24512, -3.40142]])


@pytest.mark.parametrize(
    "damage, message",
    [
        # bytes overwritten as the fault test does (non-letters become '#')
        (lambda text: text.replace("0.700*[#   3]+0.200", "#a###b#####c##d###"), "line 6"),
        (lambda text: text[: text.index("==== e(   2) =    -3.40142")], "incomplete"),  # cut at a band
        (lambda text: text[: text.index("    |psi|^2 = 1.000\n\n k =")], "incomplete"),  # inside a band block
        (lambda text: text.replace("|psi|^2 = 0.000", "|psi|^2 = 0.0#0"), "not projwfc.x output"),
        (lambda text: text.replace(" k =   0.5000000000", " k =   0.50000000x0"), "line 10"),
    ],
)
def test_a_damaged_listing_is_a_value_error(damage, message):
    with pytest.raises(ValueError, match=message):
        check_projection_listing(damage(LISTING), n_k=2, n_bands=2)


def test_counts_must_match_the_projection_file():
    with pytest.raises(ValueError, match="2 k-points of 2 bands; expected 1 of 2"):
        check_projection_listing(LISTING, n_k=1, n_bands=2)
    np.testing.assert_array_equal(check_projection_listing(LISTING).shape, (2, 2))


def test_header_numbers_and_k_points():
    result = read_atomic_proj(XML)
    assert result.n_electrons == 4.0
    assert result.fermi_energy_ev == pytest.approx(0.1 * RY_TO_EV)
    np.testing.assert_allclose(result.kpoints, [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
