"""`python -m feedsvc` does what the `feedsvc` console script does."""

from feedsvc.cli import main

raise SystemExit(main())
