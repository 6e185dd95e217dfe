"""aiida-xesml: AiiDA workflows and a learning core that map valence-to-core Kβ X-ray emission
spectra of compressed GeO2 to local structure (emulator + emulator-based component analysis)."""

__version__ = "0.1.0"
