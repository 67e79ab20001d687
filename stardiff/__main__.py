from stardiff.cli import main

raise SystemExit(main())
