"""The notebooks' view of the store: per-sample records of one (model, dataset), by stage.

A :class:`Study` reads the records that ``python -m hearlib run`` collected (``make figures``
runs it first), through the same :class:`hearlib.records.pipeline.Pipeline` and so under the same keys.
A record that is missing is computed on the spot where the profile is small (``quick``, ``ci``,
or no profile: the Python API); under a large profile (``paper``), or with ``HEARLIB_READ_ONLY=1``
(``make figures``' render phase), the notebook stops with one line naming the ``hearlib run``
command that fills the store. A notebook executed on a complete store loads no model.

The stages and what they hold are documented in :mod:`hearlib.records.stages`; the sample selection in
:class:`hearlib.records.selection.Selection`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from hearlib import paths
from hearlib.method.effects import CRITERIA
from hearlib.errors import UserError
from hearlib.records.pipeline import Pipeline
from hearlib.records.selection import Selection
from hearlib.records.stages import Settings
from hearlib.records.store import Record, slug

if TYPE_CHECKING:
    from hearlib.method.checks import Coverage

__all__ = ["Study", "stack", "SMALL_PROFILES"]

SMALL_PROFILES = ("quick", "ci")


STUDY_SCENES = re.compile(r"study-(\d+)")


def study_data(data) -> Path:
    """``data``, resolved against the repository; the generated study scenes (``data/scenes/study-N``,
    what ``make figures`` makes: N held-out scenes of seed 1) are generated here if missing, so a
    notebook opened on a fresh clone runs; any other missing folder is an error."""
    path = Path(paths.from_root(data))
    match = STUDY_SCENES.fullmatch(path.name)
    if not path.exists() and match and path.parent == paths.SCENES:
        from hearlib.organism import scenes

        print(f"generating the study scenes {path} (as `make figures` does) ...", flush=True)
        scenes.generate(path, int(match.group(1)), seed=1, workers=2)
    if not path.exists():
        raise UserError(f"dataset not found: {path}; give a COCO-format or DomainNet-layout folder, "
                        "or run `make figures` first for the generated scenes")
    return path


def may_compute(profile: str | None) -> bool:
    """Whether a notebook under ``profile`` computes missing records (see the module docstring)."""
    if os.environ.get("HEARLIB_READ_ONLY", "").lower() in ("1", "true", "yes"):
        return False
    return profile is None or profile in SMALL_PROFILES


class Study:
    """Per-sample records of one (model, dataset), read from the store or computed.

    ``model``: organism folder, checkpoint folder, hub id or registry name. ``data``: a COCO-format
    folder / instances file, a DomainNet-layout folder, or a folder from ``python -m hearlib
    scenes``. ``profile``: the notebook's profile (decides whether missing records are computed).
    """

    def __init__(self, model: str | Path, data: str | Path, *, kind: str | None = None,
                 domains: Sequence[str] | None = None, store: str | Path | None = None,
                 n_mean_images: int = 100, method: str = "fast", batch_size: int = 64,
                 device: str | None = None, progress: bool = True, profile: str | None = None,
                 compute: bool | None = None):
        from hearlib.paper.plan import fill_command

        store = paths.from_root(store) if store is not None else paths.STORE / "study"
        self.profile = profile
        command = fill_command({"data": data, "domain_data": data if kind == "domainnet" else None},
                               profile, store, ["domains"] if kind == "domainnet" else None)
        self.pipeline = Pipeline(paths.from_root(model), study_data(data), kind=kind, domains=domains, store=store,
                                 n_mean_images=n_mean_images, method=method, batch_size=batch_size, device=device,
                                 progress=progress, compute=may_compute(profile) if compute is None else compute,
                                 fill_command=command)
        self.progress = progress
        self._coverage = None                   # Study.coverage, once a record has it (a model's coverage is fixed)

    def __repr__(self) -> str:
        p = self.pipeline
        return f"Study(model={p.model_id!r}, dataset={p.dataset_id!r}, R={p.n_mean_images}, method={p.method!r})"

    # -- identities --------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The model as given."""
        return self.pipeline.model

    @property
    def model_id(self) -> str:
        return self.pipeline.model_id

    @property
    def dataset_id(self) -> str:
        return self.pipeline.dataset_id

    @property
    def data(self) -> Path:
        return self.pipeline.data

    @property
    def kind(self) -> str:
        return self.pipeline.kind

    @property
    def engine(self):
        return self.pipeline.engine

    def items(self) -> list:
        """Every image of the dataset with its label, in the study's order."""
        return self.pipeline.items()

    # -- samples -----------------------------------------------------------------------
    def samples(self, n: int | None, correct_only: bool = True, prompt: str | None = None,
                per_class: int | None = None, min_per_class: int | None = None,
                interleave: Sequence[str] | None = None, questions=None, skip: int = 0) -> list:
        """The first ``n`` samples the model answers correctly (see :class:`hearlib.records.selection.Selection`).

        ``questions`` (:class:`hearlib.records.questions.Question` s, e.g. ``self.questions().values()``):
        the samples answered correctly under every one of them; ``skip``: the ``n`` after the first
        ``skip`` (samples disjoint from those). ``interleave`` is accepted for
        older notebooks: DomainNet datasets are always walked round-robin over (domain, class)."""
        pairs = tuple((q.prompt, q.answer) for q in questions) if questions else ()
        return self.pipeline.select(Selection(n, correct_only, prompt, per_class, min_per_class, pairs, skip))

    def questions(self, custom=None) -> dict:
        """The question types this dataset offers (:func:`hearlib.records.questions.questions_for`), object first."""
        from hearlib.records.questions import questions_for

        return questions_for(self.items(), custom)

    def many(self, stage: str, items: Iterable, desc: str | None = None, **settings) -> list[Record]:
        """``stage`` (a method name) for every item, with a progress bar while records are computed."""
        items = list(items)
        method = getattr(self, stage)
        iterator = items
        if self.progress and self.pipeline.compute:
            from tqdm.auto import tqdm
            iterator = tqdm(items, desc=desc or f"{stage} ({self.model_id})", unit="sample", leave=False)
        return [method(item, **settings) for item in iterator]

    # -- stages --------------------------------------------------------------------------
    def _get(self, stage: str, item, **settings) -> Record:
        return self.pipeline.ensure(stage, item, Settings.make(**settings))

    def screen(self, item, prompt: str | None = None, answer: str | None = None) -> Record:
        """Unablated forward: does the model answer ``item.label`` (or the field ``answer``)?"""
        return self._get("screen", item, prompt=prompt, answer=answer)

    def attribution(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0,
                    prompt: str | None = None, answer: str | None = None) -> Record:
        """HeAr: masks, π, θ (``theta``), held-out R² and Pearson, Eq. 10 attention weight.
        ``answer``: the sample field holding the answer word (default ``label``; :mod:`hearlib.records.questions`)."""
        return self._get("attribution", item, n_masks=n_masks, ratio=ratio, seed=seed, prompt=prompt, answer=answer)

    def validation(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0,
                   prompt: str | None = None, threshold: float = 0.8,
                   criteria: Sequence[str] = CRITERIA) -> Record:
        """Single-head Δ, faithfulness/completeness per criterion, x*."""
        return self._get("validation", item, n_masks=n_masks, ratio=ratio, seed=seed, prompt=prompt,
                         threshold=threshold, criteria=tuple(criteria))

    def text(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0, prompt: str | None = None,
             threshold: float = 0.8, token_threshold: float = 0.05) -> Record:
        """Text tokens under x*: Δ_i, u*, π(x*, u*)/π(x*)."""
        return self._get("text", item, n_masks=n_masks, ratio=ratio, seed=seed, prompt=prompt,
                         threshold=threshold, token_threshold=token_threshold)

    def image(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0, prompt: str | None = None,
              threshold: float = 0.8, token_threshold: float = 0.05, n_image_masks: int = 10_000,
              image_ratio: float = 0.75) -> Record:
        """Image tokens under (x*, u*): θ^img and Eq. 13's weighted attention w."""
        return self._get("image", item, n_masks=n_masks, ratio=ratio, seed=seed, prompt=prompt, threshold=threshold,
                         token_threshold=token_threshold, n_image_masks=n_image_masks, image_ratio=image_ratio)

    def logit_lens(self, item, n: int, k: int = 10, prompt: str | None = None) -> list[tuple[str, float]]:
        """Top-k tokens of head n's output at the last position (Fig. 8), from the lens record."""
        record = self._get("lens", item, prompt=prompt, lens_k=max(k, Settings().lens_k))
        tokens, values = record["lens_tokens"][int(n)], record["lens_logits"][int(n)]
        return [(str(t), float(v)) for t, v in zip(tokens[:k], values[:k])]

    # -- where the read happens (notebook 11) ---------------------------------------------
    def knockout(self, item, prompt: str | None = None, answer: str | None = None) -> Record:
        """π with every head of each window of layers [l, l + w) ablated (``pi_w1``, ``pi_w2``)."""
        return self._get("knockout", item, prompt=prompt, answer=answer)

    def readout(self, item, prompt: str | None = None, answer: str | None = None) -> Record:
        """The final position's attention over the image per layer and head, and the residual
        stream by layer (``final_attention``, ``residual_final``, ``residual_image``)."""
        return self._get("readout", item, prompt=prompt, answer=answer)

    def generation(self, item, **settings) -> Record:
        """Greedy generation under the head sets of notebook 12 (:mod:`hearlib.records.generation_stage`)."""
        return self._get("generation", item, **settings)

    def patching(self, item, prompt: str | None = None, answer: str | None = None) -> Record:
        """Head outputs at the final position patched in from a partner image, per layer
        (``effect``, ``flipped``; the partner in the record's metadata)."""
        return self._get("patching", item, prompt=prompt, answer=answer)

    def refusal(self, stage: str, item, **settings) -> str | None:
        """Why ``stage`` gives ``item`` no record (a model that cannot have it: Mllama's readout, whose
        image tokens are cross-attention keys), as the store's manifest keeps it or computing it says;
        None when the record is there or can be made."""
        from hearlib.records.stages import StageFailed

        made = Settings.make(**settings)
        status = self.pipeline.store.status(self.pipeline.key(stage, made, item)) or {}
        if status.get("status") == "failed" and self.pipeline.get(stage, item, made) is None:
            return status.get("reason") or "failed"
        try:
            self._get(stage, item, **settings)
        except StageFailed as error:
            return str(error)
        return None

    def coverage(self) -> "Coverage | None":
        """Which decoder layers HeAr covers in this model (:class:`hearlib.method.checks.Coverage`), as the
        environment of its first stored record says, so it is known without loading the model; None while the
        store holds no record of it."""
        from hearlib.method.checks import Coverage

        if self._coverage is not None:
            return self._coverage
        store = self.pipeline.store
        for key in store.keys(prefix=f"{slug(self.model_id)}/"):
            record = store.get(key)
            covered = (record.meta.get("environment") or {}).get("covered") if record else None
            if covered:
                self._coverage = Coverage.from_dict(covered)
                break
        return self._coverage

    def layer_rows(self) -> list[int] | None:
        """The decoder layer of each row of this model's head maps where HeAr covers some layers only (tiny
        Mllama: [1, 3]); None where the rows are every decoder layer, or while the store holds no record."""
        coverage = self.coverage()
        return list(coverage.layers) if coverage is not None and coverage.kind != "decoder" else None

    def row_depths(self, n_rows: int) -> np.ndarray:
        """The relative depth in the decoder (0 = first layer, 1 = last) of each of a head map's ``n_rows`` rows."""
        layers = [self.decoder_layer(row, n_rows) for row in range(n_rows)]
        return np.array([layer / max(1, n_decoder - 1) for layer, n_decoder in layers])

    def decoder_layer(self, row: int, n_rows: int) -> tuple[int, int]:
        """(the decoder layer, the decoder's number of layers) of row ``row`` of ``n_rows`` of a head map: the
        row itself where HeAr covers every layer, else the covered layer it stands for (Mllama's row 0 is
        decoder layer 1 of 4), so that depths are the decoder's."""
        coverage = self.coverage()
        if coverage is None or coverage.kind == "decoder":
            return row, n_rows
        return coverage.layers[row], coverage.decoder_layers

    # -- the engine, for API users -------------------------------------------------------
    def record(self, item, prompt: str | None = None, answer: str = "label"):
        """The engine's unablated forward for ``item`` (loads the model); ``answer``: the answer field."""
        return self.pipeline.context(item, prompt or Settings().prompt, answer).record

    def evaluator(self, item, prompt: str | None = None, answer: str = "label"):
        """``evaluate(heads, text=None, image=None) -> π`` for ``item`` (loads the model)."""
        return self.pipeline.context(item, prompt or Settings().prompt, answer).evaluate


def stack(entries: Sequence[Record], key: str) -> np.ndarray:
    """``np.stack([e[key] for e in entries])``."""
    return np.stack([np.asarray(e[key]) for e in entries])
