"""`python -m api.build_host ...`: see cli.py."""

import sys

from api.build_host.cli import main

sys.exit(main())
