"""`python -m parallelrun`: the `parallelrun` command."""

import sys

from .cli import main

sys.exit(main())
