"""``python -m cxhealth``: the same command line as the ``cxhealth`` script."""

import sys

from cxhealth.cli.main import main

sys.exit(main())
