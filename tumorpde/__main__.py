"""``python -m tumorpde`` runs the command line."""

import sys

from tumorpde.cli import main

sys.exit(main())
