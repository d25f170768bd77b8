"""``python -m serouter`` is the ``serouter`` command."""

import sys

from serouter.cli import main

sys.exit(main())
