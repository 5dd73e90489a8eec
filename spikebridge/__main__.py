"""``python -m spikebridge`` runs the command-line interface."""

import sys

from .cli import main

# guarded: Dask's worker processes start with "spawn", which imports this module again
if __name__ == "__main__":
    sys.exit(main())
