"""``python -m tumorpde.verification``: rerun the verification cases and write the report."""

from tumorpde.verification.report import main

raise SystemExit(main())
