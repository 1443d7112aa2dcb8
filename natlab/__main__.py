from natlab.cli import main

raise SystemExit(main())
