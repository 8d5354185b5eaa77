"""``python -m semansys_auth`` is the ``semansys-auth`` command."""

import sys

from ._cli import main

sys.exit(main())
