"""`python -m curation.cli ...` (how `curation app` starts its worker)."""

import sys

from curation.cli import main

sys.exit(main())
