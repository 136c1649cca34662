import sys

from hearlib.cli import main   # importing hearlib sets OMP_WAIT_POLICY before torch (hearlib/__init__.py)

sys.exit(main())
