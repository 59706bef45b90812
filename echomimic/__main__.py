"""``python -m echomimic``: see :mod:`echomimic.cli`."""

from .cli import main

raise SystemExit(main())
