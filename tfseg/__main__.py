"""``python -m tfseg`` == the ``tfseg`` console script."""

import sys

from tfseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
