"""`python -m scoring_api`: serve the scoring API until SIGTERM."""

import sys

from scoring_api.cli import main

sys.exit(main())
