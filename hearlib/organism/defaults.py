"""Training defaults of the fast recipe on generated scenes (steps per stage and size), apart from the
trainer and its command line so that both read them without importing each other."""

DEFAULT_VISION_STEPS = 6000
DEFAULT_DECODER_STEPS = {"hear-organism-s": 1500, "hear-organism-m": 1200, "hear-organism-l": 1000}
