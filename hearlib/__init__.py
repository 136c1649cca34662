"""hearlib: head attribution (HeAr) for image-to-text information flow in vision-language models.

Start with :func:`hearlib.method.loading.load_engine`, :func:`hearlib.method.means.compute_means` and
:meth:`hearlib.method.engine.Engine.normalized`; see README.md and docs/ARCHITECTURE.md.
"""
import os

# OpenMP threads that wait for work sleep instead of spinning. On a shared 2-core machine the
# spinning default made every small torch op (one tiny model's linear layer) wait for a time slice:
# 10-40 ms instead of 0.2 ms (docs/PERFORMANCE.md). It takes effect where hearlib is imported before
# torch (the command line, the notebooks); an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
