"""``python -m ovserve``."""

from ovserve.cli import main

raise SystemExit(main())
