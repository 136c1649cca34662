import sys

from hearlib.cli import main

sys.exit(main())
