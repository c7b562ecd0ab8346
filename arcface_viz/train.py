"""``python -m arcface_viz.train --config FILE [--resume]``: the full-scale trainer's command line.

The trainer lives in :mod:`arcface_viz.fullscale.train`; this module keeps the command that existing
command lines, run registries and Slurm scripts use.
"""

import sys

from .fullscale.train import main

if __name__ == "__main__":
    sys.exit(main())
