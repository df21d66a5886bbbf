"""`python -m bench` (from the repository's top directory): the same as bench/run.py."""

import sys

from bench.run import main

sys.exit(main())
