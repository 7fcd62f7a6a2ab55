"""``python -m tabpipe.cli``: the ``tabpipe`` command (``models promote`` runs ``models verify`` this way)."""
import sys

from tabpipe.cli import main

sys.exit(main())
