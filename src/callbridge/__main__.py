"""``python -m callbridge`` runs the command-line interface."""

from callbridge.cli.main import main

raise SystemExit(main())
