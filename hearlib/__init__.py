"""hearlib: head attribution (HeAr) for image-to-text information flow in vision-language models.

Start with :func:`hearlib.models.load_engine`, :func:`hearlib.means.compute_means` and
:meth:`hearlib.engine.Engine.normalized`; see README.md and docs/ARCHITECTURE.md.
"""
__version__ = "0.1.0"

from hearlib.prompts import ALTERNATIVE_PROMPTS, PAPER_PROMPT  # noqa: F401
