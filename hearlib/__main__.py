import sys

from hearlib.cli import main   # main sets OMP_WAIT_POLICY before torch is imported

sys.exit(main())
