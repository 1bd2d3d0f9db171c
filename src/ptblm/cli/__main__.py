"""`python -m ptblm.cli`, as the `ptblm` console script."""
import sys

from . import main

sys.exit(main())
