"""``python -m lockcore_service.cli``: the ``lockcore`` command."""

import sys

from . import main

sys.exit(main())
