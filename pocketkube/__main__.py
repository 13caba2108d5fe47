"""`python -m pocketkube` runs the CLI."""

import sys

from pocketkube.cli.main import main

sys.exit(main())
