"""``python -m model.metrics``: see :mod:`model.metrics.cli`."""

import sys

from model.metrics.cli import main

sys.exit(main())
