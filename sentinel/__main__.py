"""`python -m sentinel ...` is the `sentinel` command."""

import sys

from sentinel.cli import main

sys.exit(main())
