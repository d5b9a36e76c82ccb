"""`python -m access.tunnel`: the stdin/stdout tunnel (ssh's ProxyCommand)."""

import sys

from access.cli.tunnel import tunnel_main

sys.exit(tunnel_main())
