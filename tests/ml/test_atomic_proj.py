"""Reading projwfc.x's atomic_proj.xml (full-precision projections)."""

import numpy as np
import pytest

from aiida_xesml.ml.atomic_proj import RY_TO_EV, read_atomic_proj

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
