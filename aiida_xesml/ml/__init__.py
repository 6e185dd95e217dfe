"""The learning core: plain numpy / scipy / scikit-learn / ase. Never imports aiida.

Units everywhere: Å, eV, GPa, fs, K.
"""
