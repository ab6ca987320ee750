from devfleet_agent.cli import main

raise SystemExit(main())
