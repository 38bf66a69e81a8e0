from codeapi.cli import main

raise SystemExit(main())
