"""``python -m lrfind``: the ``lrfind`` command line (see ``lrfind.cli``)."""

from lrfind.cli import main

raise SystemExit(main())
