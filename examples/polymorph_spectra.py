"""Kβ spectra of rutile-type (6-fold Ge) and α-quartz-type (4-fold Ge) GeO2, with provenance.

Runs ``xesml.spectrum`` (pw.x SCF + projwfc.x) on both experimental cells with the chosen protocol
and plots the per-site mean spectrum of each, with the Kβ″ and Kβ2 windows marked.

    AIIDA_PATH=$PWD/.aiida .venv/bin/python examples/polymorph_spectra.py [--protocol fast] [--output FILE]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from aiida import load_profile, orm  # noqa: E402
from aiida.engine import run_get_node  # noqa: E402

from aiida_xesml.constants import code_label  # noqa: E402
from aiida_xesml.ml.moments import DEFAULT_WINDOWS  # noqa: E402
from aiida_xesml.ml.structures import quartz_geo2, rutile_geo2  # noqa: E402
from aiida_xesml.workflows.spectrum import SpectrumWorkChain  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--output", default="docs/_static/polymorph_spectra.png")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    load_profile(args.profile)
    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    for name, atoms, colour in (("rutile type, 6-fold Ge", rutile_geo2(), "tab:red"),
                                ("α-quartz type, 4-fold Ge", quartz_geo2(), "tab:blue")):
        builder = SpectrumWorkChain.get_builder_from_protocol(
            f"{code_label('pw')}@localhost", f"{code_label('projwfc')}@localhost", orm.StructureData(ase=atoms),
            protocol=args.protocol)
        results, node = run_get_node(builder)
        if not node.is_finished_ok:
            raise SystemExit(f"{name}: xesml.spectrum <{node.pk}> failed: {node.exit_message}")
        spectra = results["spectra"]
        moments = spectra.moments().mean(axis=0)
        axis.plot(spectra.energy_ev, spectra.intensity.mean(axis=0), color=colour,
                  label=f"{name} (Kβ″ M1 {moments[1]:.2f} eV, pk {spectra.pk})")
        print(f"{name}: spectra node {spectra.pk}, moments {moments.round(3).tolist()}")
    for (lo, hi), label in zip(DEFAULT_WINDOWS.values(), ("Kβ″ window", "Kβ2 window")):
        axis.axvspan(lo, hi, color="0.9", zorder=0)
        axis.text((lo + hi) / 2, 0.03, label, ha="center", va="bottom", fontsize=9,
                  transform=axis.get_xaxis_transform())
    axis.set_xlabel("energy relative to the VBM (eV)")
    axis.set_ylabel("Ge p-projected occupied DOS (states/eV per Ge)")
    axis.set_title(f"Valence-to-core Kβ of GeO2 polymorphs (PBE, {args.protocol} protocol)")
    axis.set_xlim(-30, 5)
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
