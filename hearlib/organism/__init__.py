"""The model organism, apart from the method: the scene generator (:mod:`.scenes`, COCO- and
DomainNet-format data), the model (:mod:`.model`, a real transformers LLaVA with a word-level
tokenizer and LLaVA-1.5's chat template) and its trainer (:mod:`.train`). The method
(:mod:`hearlib.method.engine`, :mod:`hearlib.records.stages`, ...) knows nothing of it; the organisms are just
models it loads from ``data/models/``. Importing this package imports nothing heavy."""
