"""Errors a user can act on. The command line prints them as one line, no traceback."""


class UserError(Exception):
    """Bad input: a missing model, an unreadable image, an answer the tokenizer cannot
    represent, a means file from another model or prompt, an unsupported architecture."""


class MeansMismatch(UserError):
    """A mean keys/values file that does not belong to this model, resolution or prompt."""


class UnsupportedModel(UserError):
    """An architecture hearlib has no adapter for."""
