"""`python -m onecycle` and the `onecycle` command: runs the demo (see onecycle.demo)."""
import sys

from .demo import main

if __name__ == '__main__':
    sys.exit(main())
