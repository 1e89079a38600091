"""``python -m pdbatch.cli``: the `pdbatch` command."""

import sys

from .commands import main

sys.exit(main())
