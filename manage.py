#!/usr/bin/env python
"""Django's command-line utility; the same commands as `replaydesk`."""

import sys

from console.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
