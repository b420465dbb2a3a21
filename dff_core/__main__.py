from dff_core.cli import main

raise SystemExit(main())
