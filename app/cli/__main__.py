"""``python -m app.cli``: the ``lockcore`` command."""

import sys

from . import main

sys.exit(main())
