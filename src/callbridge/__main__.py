"""``python -m callbridge``: the same as the ``callbridge`` command."""

from callbridge.cli import main

raise SystemExit(main())
