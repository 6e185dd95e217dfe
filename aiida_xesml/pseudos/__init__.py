"""Pseudopotentials the plugin generates with Quantum ESPRESSO's ``ld1.x``.

- :mod:`aiida_xesml.pseudos.core_hole`: a Ge PAW dataset with a 1s core hole and its ground-state
  partner made with the same recipe, for the ΔSCF 1s binding energies of the ``core_hole``
  alignment (:mod:`aiida_xesml.workflows.core_hole`).

The Ge 3d-in-valence dataset of the ``semicore`` alignment is generated in
:mod:`aiida_xesml.environment` (``aiida-xesml setup --semicore``); both use its helpers
(:func:`aiida_xesml.environment.reflow_upf`, :class:`aiida_xesml.environment.SetupError`).
"""
