"""`python -m autoscaler` is the same as the `tfserving-autoscaler` console script."""

from autoscaler.cli import main

raise SystemExit(main())
