"""`python -m producer_tools.cli`: the same as the `imagegate` console script."""

import sys

from producer_tools.cli.main import main

sys.exit(main())
