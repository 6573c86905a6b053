"""``python -m cowdns``."""

from cowdns.cli import main

raise SystemExit(main())
