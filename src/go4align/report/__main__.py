"""``python -m go4align.report RUN_DIR``."""

import sys

from .cli import main

sys.exit(main())
