"""Work chains: AIMD compression, spectra, analysis, pipeline."""
