"""``python -m tumorpde`` runs the command line."""

import sys

from tumorpde.apps.cli import main

sys.exit(main())
