"""`python -m cspine` and `accelerate launch -m cspine train`: the `cspine` command (cspine.cli)."""

import sys

from cspine.cli import main

sys.exit(main())
