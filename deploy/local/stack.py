"""Entry point of `deploy/local/stack` (the bash wrapper runs this file with the venv's
python or python3). The stack itself is the stackctl package next to this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stackctl.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
