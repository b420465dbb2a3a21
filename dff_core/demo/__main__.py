from dff_core.demo.build import main

raise SystemExit(main())
