import os
import sys

# OpenMP threads that wait for work sleep instead of spinning. On a shared 2-core machine the
# spinning default made every small torch op (one tiny model's linear layer) wait for a time slice:
# 10-40 ms instead of 0.2 ms (docs/PERFORMANCE.md). Must be set before torch is imported;
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hearlib.cli import main  # noqa: E402

sys.exit(main())
