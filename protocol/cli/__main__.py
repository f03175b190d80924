"""``python -m protocol.cli``: the ``mnist-live`` command, as child processes start it."""

import sys

from protocol.cli import main

sys.exit(main())
