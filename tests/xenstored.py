"""``python -m tests.xenstored``: run the test xenstored (see tests/xenstore_server)."""

import sys

from tests.xenstore_server.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
