"""Pseudopotential families: the Debian datasets and those the plugin generates with ``ld1.x``.

- :mod:`aiida_xesml.pseudos.families`: the families of ``aiida-xesml setup``, Debian's PBE PAW datasets
  and (``--semicore``) a Ge dataset with 3d in valence for the ``semicore`` alignment;
- :mod:`aiida_xesml.pseudos.core_hole`: a Ge PAW dataset with a 1s core hole and its ground-state
  partner made with the same recipe, for the ΔSCF 1s binding energies of the ``core_hole``
  alignment (:mod:`aiida_xesml.workflows.core_hole`);
- :mod:`aiida_xesml.pseudos.ld1`: what the generated ones share (running ld1.x, reflowing its UPF
  for pw.x 6.7, installing a family).
"""
