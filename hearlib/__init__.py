"""hearlib: head attribution (HeAr) for image-to-text information flow in vision-language models.

Start with :func:`hearlib.method.loading.load_engine`, :func:`hearlib.method.means.compute_means` and
:meth:`hearlib.method.engine.Engine.normalized`; see README.md and docs/ARCHITECTURE.md.
"""
__version__ = "0.1.0"
