"""One (model, dataset): its samples, its stage records in the store, and how a missing one is made.

:class:`Pipeline` is the single code path between the stages (:mod:`hearlib.records.stages`) and the
store (:mod:`hearlib.records.store`). ``python -m hearlib run`` and the notebooks' :class:`hearlib.paper.study.Study`
both go through it, so they read and write the same records under the same keys.

* **Records.** ``ensure(stage, item, settings)`` returns the record, reading it if it exists and
  otherwise computing it (and the stages it needs) under a claim on the sample
  (:mod:`hearlib.records.claims`), so no two processes compute one sample. With ``compute=False`` a
  missing record raises :class:`NotCollected`, naming the command that fills the store.
* **Samples.** ``items()`` lists the dataset in the study's order (COCO: sorted by image id;
  DomainNet: round-robin over (domain, class) so any prefix spans every domain and class);
  ``select(selection)`` walks it and keeps the first ``n`` samples the model answers correctly
  (screening each with the unablated forward), with optional per-class caps.
* **Means.** The mean image keys/values under a prompt come from the last R images of the
  dataset's image folder in sorted order (study samples are taken from the start), computed
  once under a claim and saved in ``<store>/_means/``.
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from hearlib.records.claims import Claims, DEFAULT_TIMEOUT
from hearlib.records.selection import Selection
from hearlib.errors import UserError
from hearlib.method.masks import parse_batch_size
from hearlib.prompts import PAPER_PROMPT
from hearlib.records.stages import STAGES, Settings, StageFailed, needed, stage_key_settings
from hearlib.records.store import CLAIMS_FOLDER, Record, Store, settings_hash, slug

__all__ = ["Pipeline", "NotCollected", "NoSamples", "model_fingerprint", "dataset_kind", "dataset_id",
           "load_items", "mean_reference_images"]

POLL_SECONDS = 0.5


class NotCollected(UserError):
    """A record the notebook needs is not in the store and this run may not compute it."""


class NoSamples(UserError):
    """A selection found no usable sample (the model answers none correctly, say)."""


# ----------------------------------------------------------------------------- identities

def model_fingerprint(model: str | Path) -> str:
    """Name + fingerprint of a local model folder (a retrained model never reuses records);
    a hub id or registry name as is."""
    path = Path(str(model)).expanduser()
    if not path.is_dir():
        return slug(str(model))
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if not file.is_file():
            continue
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}".encode())
        if file.suffix in (".json", ".safetensors", ".bin"):
            with open(file, "rb") as stream:
                digest.update(stream.read(1 << 16))
                if stat.st_size > 1 << 17:
                    stream.seek(-(1 << 16), os.SEEK_END)
                    digest.update(stream.read())
    return f"{slug(path.resolve().name)}-{digest.hexdigest()[:8]}"


def dataset_kind(data: Path) -> str:
    """``coco`` for a folder with ``annotations/`` (or a ``coco/`` subfolder, or a JSON file), else ``domainnet``."""
    data = Path(data)
    if (data / "annotations").is_dir() or (data / "coco").is_dir() or data.suffix == ".json":
        return "coco"
    return "domainnet"


def dataset_id(data: Path, kind: str, domains: Sequence[str] | None = None) -> str:
    name = Path(data).resolve().name
    if Path(data).suffix == ".json":
        name = Path(data).resolve().parent.parent.name + "-" + Path(data).stem
    if kind == "domainnet" and domains:
        name += "-" + "+".join(domains)
    return f"{kind}-{slug(name)}"


# ----------------------------------------------------------------------------- samples

def _interleave(items: Sequence, attributes: Sequence[str]) -> list:
    """Round-robin order over the groups of ``attributes`` (sorted): the first item of every
    group before the second of any; the first attribute cycles fastest."""
    groups: dict[tuple, list] = {}
    for item in items:
        groups.setdefault(tuple(str(getattr(item, a)) for a in reversed(attributes)), []).append(item)
    lists = [groups[key] for key in sorted(groups)]
    return [lst[i] for i in range(max(map(len, lists), default=0)) for lst in lists if i < len(lst)]


def load_items(data: Path, kind: str, domains: Sequence[str] | None = None, split: str | None = None) -> list:
    """Every image of the dataset with its label, in the study's order (see the module docstring)."""
    from hearlib.records import datasets

    if kind == "coco":
        items = datasets.load_coco(data, split=split)
    elif kind == "domainnet":
        items = _interleave(datasets.load_domainnet(data, domains=list(domains) if domains else None),
                            ("domain", "label"))
    else:
        raise UserError(f"unknown dataset kind {kind!r}; use 'coco' or 'domainnet'")
    if not items:
        raise UserError(f"no usable samples in {data}: no image with a single main object (COCO) "
                        "or no <domain>/<class>/<image> file (DomainNet)")
    return items


def _readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:
        return False


def mean_reference_images(image_root: Path, n: int) -> list[Path]:
    """The last ``n`` readable images below ``image_root`` in sorted order."""
    from hearlib.io import image_files

    chosen = []
    for path in reversed(image_files(image_root)):
        if len(chosen) >= n:
            break
        if _readable(path):
            chosen.append(path)
    if not chosen:
        raise UserError(f"no readable images under {image_root} for the mean keys/values")
    return chosen


# ----------------------------------------------------------------------------- one sample's context

class SampleContext:
    """What the stages of one (sample, prompt, answer field) share, computed at most once: the
    prepared sample, its unablated forward, ℓ(1) and ℓ(0), and the evaluator π(x, u, v).
    ``answer`` is the word scored: ``item.label`` for the paper's question, else the sample's
    ``answer_field`` (:func:`hearlib.records.questions.answer_of`)."""

    def __init__(self, pipeline: "Pipeline", item, prompt: str, answer_field: str = "label"):
        from hearlib.records.questions import answer_of

        self.pipeline, self.item, self.prompt = pipeline, item, prompt
        self.answer_field = answer_field
        self.answer = answer_of(item, answer_field)
        self.settings: Settings | None = None
        self._sample = self._record = None
        self._problem: str | None | bool = False

    @property
    def engine(self):
        return self.pipeline.engine

    @property
    def answer_problem(self) -> str | None:
        """Why this sample cannot be studied (an answer the tokenizer cannot represent, an image
        the processor cannot take), or None."""
        if self._problem is False:
            if self.answer is None:
                self._problem = f"the sample has no {self.answer_field!r} label to answer this question"
                return self._problem
            problem = self.engine.answer_problem(self.answer, self.prompt)
            if problem is None:
                try:
                    self._prepare()
                except UserError as error:      # an unreadable image: this sample fails
                    raise StageFailed(str(error)) from None
            self._problem = problem
        return self._problem

    def _prepare(self):
        if self._sample is None:
            self._sample = self.engine.prepare(self.item.path, answer=self.answer, prompt=self.prompt,
                                               sample_id=str(self.item.image_id))
        return self._sample

    @property
    def sample(self):
        return self._prepare()

    @property
    def record(self):
        if self._record is None:
            self._record = self.engine.record(self.sample)
        return self._record

    @property
    def means(self):
        return self.pipeline.means(self.prompt)

    def logits(self, heads, text=None, image=None) -> np.ndarray:
        return self.engine.logits(self.sample, self.means, heads, text, image, method=self.pipeline.method,
                                  batch_size=self.pipeline.batch_size)

    @property
    def reference_logits(self) -> tuple[float, float]:
        """ℓ(1) and ℓ(0): every head intact, every head ablated (cached by the engine per means)."""
        return self.engine.reference_logits(self.sample, self.means, self.pipeline.method)

    def evaluate(self, heads, text=None, image=None) -> np.ndarray:
        """π = (ℓ(x, u, v) − ℓ(0)) / (ℓ(1) − ℓ(0)) for each row of the masks."""
        return self.engine.normalized(self.sample, self.means, heads, text, image, method=self.pipeline.method,
                                      batch_size=self.pipeline.batch_size)

    def need(self, stage: str) -> Record:
        return self.pipeline.ensure(stage, self.item, self.settings)


# ----------------------------------------------------------------------------- the pipeline

class Pipeline:
    """The records of one (model, dataset) in one store (see the module docstring).

    ``model``: organism folder, checkpoint folder, hub id or registry name. ``data``: a COCO-format
    folder or instances file, a DomainNet-layout folder, or a folder from ``python -m hearlib
    scenes``. ``compute=False`` never loads a model: a missing record raises :class:`NotCollected`
    with ``fill_command`` in its message."""

    def __init__(self, model: str | Path, data: str | Path, *, kind: str | None = None,
                 domains: Sequence[str] | None = None, store: str | Path | Store, n_mean_images: int = 100,
                 method: str = "fast", batch_size: int | str = 64, device: str | None = None, progress: bool = True,
                 compute: bool = True, fill_command: str = "", means_file: str | Path | None = None,
                 means_prompt: str = PAPER_PROMPT,
                 engine=None, claims_timeout: float = DEFAULT_TIMEOUT, split: str | None = None,
                 allow_partial_load: bool = False):
        self.model = str(model)
        self.data = Path(data)
        if not self.data.exists():
            raise UserError(f"dataset not found: {self.data}")
        self.kind = kind or dataset_kind(self.data)
        if self.kind not in ("coco", "domainnet"):
            raise UserError(f"unknown dataset kind {self.kind!r}; use 'coco' or 'domainnet'")
        if method not in ("fast", "literal"):
            raise UserError(f"unknown method {method!r}; use 'fast' or 'literal'")
        if int(n_mean_images) < 1:
            raise UserError("the number of mean images must be at least 1")
        self.domains = list(domains) if domains else None
        self.split = split
        self.store = store if isinstance(store, Store) else Store(store)
        self.n_mean_images, self.method, self.batch_size = int(n_mean_images), method, parse_batch_size(batch_size)
        self.device, self.progress, self.compute = device, progress, compute
        self.fill_command = fill_command
        self.means_file = Path(means_file) if means_file else None
        self.means_prompt = means_prompt
        self.model_id = model_fingerprint(model)
        self.dataset_id = dataset_id(self.data, self.kind, self.domains)
        self.claims = Claims(self.store.root / CLAIMS_FOLDER, timeout=claims_timeout)
        self._engine = engine
        self.allow_partial_load = bool(allow_partial_load)
        self._items = None
        self._means: dict[str, object] = {}
        self._means_spec: dict | None = None
        self._contexts: dict[tuple, SampleContext] = {}
        self._depth: dict[str, int] = {}
        self.computed: list[str] = []      # keys this object wrote (for logs and tests)
        self.excluded: list[tuple] = []    # (item, reason, status) screened out by the last select()
        self.delay = 0.0                   # seconds to wait holding a claim before computing (tests)
        # seconds spent computing (not reading): per stage exclusive of the stages it needed,
        # the means, the model load; and how many records each stage computed (hearlib run's table)
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._nested: list[float] = []     # seconds of the computes running inside the current one
        self.derived: dict = {}            # values a stage derives from other samples' records, by key

    def __repr__(self) -> str:
        return f"Pipeline(model={self.model_id!r}, dataset={self.dataset_id!r}, store={str(self.store.root)!r})"

    # -- lazy pieces -------------------------------------------------------------------
    @property
    def engine(self):
        """The model's :class:`~hearlib.method.engine.Engine`, loaded on first use (NotCollected
        under ``compute=False``); :attr:`engine_loaded` tells whether it is there without loading it."""
        if self._engine is None:
            if not self.compute:
                raise NotCollected(self._missing_message("a model forward"))
            from hearlib.method.loading import load_engine

            started = time.perf_counter()
            self._engine = load_engine(self.model, device=self.device, allow_partial_load=self.allow_partial_load)
            self._account("load model", time.perf_counter() - started, count=False)
        return self._engine

    @engine.setter
    def engine(self, engine) -> None:
        """Give the pipeline an engine loaded elsewhere (the explorer's ``load_model``)."""
        self._engine = engine

    @property
    def engine_loaded(self) -> bool:
        """Whether the engine is loaded (reading this never loads it)."""
        return self._engine is not None

    def items(self) -> list:
        if self._items is None:
            self._items = load_items(self.data, self.kind, self.domains, self.split)
        return self._items

    def image_root(self) -> Path:
        if self.kind == "coco":
            items = self.items()
            return Path(items[0].path).parent if items else self.data
        return self.data / "domains" if (self.data / "domains").is_dir() else self.data

    def means_spec(self, prompt: str | None = None) -> dict:
        """The means' identity in record keys (no model needed): the means file's hash for the
        prompt it was made with (``means_prompt``), else the dataset's reference images."""
        if self.means_file is not None and (prompt or PAPER_PROMPT) == self.means_prompt:
            return {"file_sha256": hashlib.sha256(self.means_file.read_bytes()).hexdigest()}
        if self._means_spec is None:
            root = self.image_root()
            refs = mean_reference_images(root, self.n_mean_images)
            names = [str(p.relative_to(root)) if p.is_relative_to(root) else p.name for p in refs]
            self._means_spec = {"source": "dataset", "n_images": len(refs),
                                "images": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]}
        return self._means_spec

    def means(self, prompt: str):
        """Mean image keys/values under ``prompt``: the file, or computed once per store under a claim."""
        from hearlib.method.means import MeanKV, compute_means

        if prompt in self._means:
            return self._means[prompt]
        if self.means_file is not None and prompt == self.means_prompt:
            means = MeanKV.load(self.means_file, engine=self.engine, prompt=prompt)
        else:
            spec = self.means_spec(prompt)
            tag = hashlib.sha256(prompt.encode()).hexdigest()[:12]
            name = f"{self.dataset_id}-p{tag}-R{spec['n_images']}-{spec['images']}"
            path = self.store.root / "_means" / slug(self.model_id) / f"{name}.safetensors"
            claim = f"_means/{slug(self.model_id)}/{name}"
            while not path.is_file():
                if self.claims.acquire(claim):
                    try:
                        if not path.is_file():
                            engine = self.engine
                            started = time.perf_counter()
                            refs = mean_reference_images(self.image_root(), self.n_mean_images)
                            compute_means(engine, refs, prompt=prompt, progress=self.progress).save(path)
                            self._account("means", time.perf_counter() - started)
                    finally:
                        self.claims.release(claim)
                else:
                    time.sleep(POLL_SECONDS)
            means = MeanKV.load(path, engine=self.engine, prompt=prompt)
        self._means[prompt] = means
        return means

    # -- records -----------------------------------------------------------------------
    def key_settings(self, stage: str, settings: Settings) -> dict:
        """Everything that enters ``stage``'s record key (see :func:`hearlib.records.stages.stage_key_settings`)."""
        uses_means = any(STAGES[name].uses_means for name in needed(stage))
        return stage_key_settings(stage, settings, self.method, self.means_spec(settings.prompt) if uses_means else None)

    def settings_digest(self, stage: str, settings: Settings) -> str:
        """The hash of ``stage``'s key settings: what names its records' folder (``<stage>-<digest>``)
        and what ``hearlib heads --settings`` chooses them by."""
        return settings_hash(self.key_settings(stage, settings))

    def key(self, stage: str, settings: Settings, item) -> str:
        digest = self.settings_digest(stage, settings)
        return f"{slug(self.model_id)}/{slug(self.dataset_id)}/{stage}-{digest}/{slug(item.image_id)}"

    def get(self, stage: str, item, settings: Settings) -> Record | None:
        return self.store.get(self.key(stage, settings, item))

    def _claim_name(self, item) -> str:
        return f"{slug(self.model_id)}/{slug(self.dataset_id)}/{slug(item.image_id)}"

    def ensure(self, stage: str, item, settings: Settings, *, block: bool = True) -> Record | None:
        """The record of ``stage`` for ``item``: read, or computed under the sample's claim.

        With ``block=False``, returns None instead of waiting when another process holds the claim."""
        key = self.key(stage, settings, item)
        record = self.store.get(key)
        if record is not None:
            return record
        if not self.compute:
            raise NotCollected(self._missing_message(f"the {stage} record of sample {item.image_id}"))
        name = self._claim_name(item)
        while not self.claims.acquire(name):
            if not block:
                return None
            time.sleep(POLL_SECONDS)
            record = self.store.get(key)
            if record is not None:
                return record
        self._depth[name] = self._depth.get(name, 0) + 1
        try:
            record = self.store.get(key)
            if record is None:
                if self.delay and self._depth[name] == 1:
                    time.sleep(self.delay)
                record = self._compute(stage, item, settings, key)
        finally:
            self._depth[name] -= 1
            if self._depth[name] == 0:
                self.claims.release(name)
        return record

    def sample_context(self, item, prompt: str, answer_field: str = "label") -> SampleContext:
        """A fresh context for another item (a stage's partner sample), outside the cache of the
        samples being computed."""
        return SampleContext(self, item, prompt, answer_field)

    def context(self, item, prompt: str, answer_field: str = "label") -> SampleContext:
        """The context of ``item`` under ``prompt`` and ``answer_field``: its prepared sample, record,
        means and evaluations, kept for the last few (item, prompt, answer field) asked for, so the
        stages of one sample share one prepared sample and recorded forward."""
        key = (str(item.image_id), prompt, answer_field)
        if key not in self._contexts:
            if len(self._contexts) >= 4:
                self._contexts.pop(next(iter(self._contexts)))
            self._contexts[key] = SampleContext(self, item, prompt, answer_field)
        return self._contexts[key]

    def _compute(self, stage: str, item, settings: Settings, key: str) -> Record:
        """Compute and store one record. Problems of the model or the means stop the caller;
        anything else is this sample's failure: marked in the manifest and raised as StageFailed."""
        self.engine
        if STAGES[stage].uses_means:
            self.means(settings.prompt)
        ctx = self.context(item, settings.prompt, settings.answer)
        previous, ctx.settings = ctx.settings, settings
        started = time.perf_counter()
        info = {"sample": str(item.image_id), "label": item.label, "stage": stage, "path": str(item.path)}
        self._nested.append(0.0)
        try:
            for dep in STAGES[stage].needs:
                ctx.need(dep)
            if stage != "screen" and ctx.answer_problem is not None:
                raise StageFailed(ctx.answer_problem)
            arrays, meta = STAGES[stage].compute(ctx, settings)
        except StageFailed as error:
            self.store.mark(key, "failed", str(error), info=info)
            raise
        except Exception as error:   # noqa: BLE001 - one sample's failure, with its reason
            reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            self.store.mark(key, "failed", reason, info=info)
            raise StageFailed(reason) from error
        finally:
            ctx.settings = previous
            seconds = time.perf_counter() - started
            own = seconds - self._nested.pop()      # less the stages computed inside this one
            if self._nested:
                self._nested[-1] += seconds
            self._account(stage, own)
        meta = {**meta, "stage": stage, "settings": self.key_settings(stage, settings), "model": self.model, "model_id": self.model_id,
                "dataset": self.dataset_id, "data": str(self.data), "sample": str(item.image_id),
                "label": item.label, "answer": ctx.answer, "supercategory": item.supercategory, "domain": item.domain,
                "path": str(item.path),
                "environment": self._engine.environment(self.method) if self._engine is not None else None,
                "run": {"seconds": seconds, "own_seconds": own, "computed_at": time.time(),
                        "host": socket.gethostname(), "pid": os.getpid(),
                        "device": str(self._engine.device) if self._engine is not None else None}}
        record = self.store.put(key, arrays, meta, info={**info, "seconds": round(own, 3)})
        self.computed.append(key)
        return record

    def _account(self, what: str, seconds: float, count: bool = True) -> None:
        """Add computing seconds to ``what`` (a stage, ``means`` or ``load model``)."""
        self.seconds[what] = self.seconds.get(what, 0.0) + seconds
        if count:
            self.counts[what] = self.counts.get(what, 0) + 1

    # -- samples -----------------------------------------------------------------------
    def select(self, selection: Selection) -> list:
        """The samples of ``selection`` in the study's order (see :class:`Selection`).

        Screens samples as needed; a sample another process is screening is waited for, so every
        process of a sharded run arrives at the same list."""
        screens = ([Settings.make(prompt=p, answer=a) for p, a in selection.questions] if selection.questions
                   else [Settings.make(prompt=selection.prompt) if selection.prompt else Settings()])
        bar = None
        limit = None if selection.n is None else selection.n + selection.skip
        if self.progress and self.compute and limit is not None:
            from tqdm.auto import tqdm
            bar = tqdm(total=limit, desc=f"screen {self.model_id}", unit="sample", leave=False, file=sys.stderr)
        try:
            while True:
                chosen, pending, excluded, counts, screened = [], [], [], {}, 0
                for item in self.items():
                    if limit is not None and len(chosen) + len(pending) >= limit:
                        break
                    if selection.per_class is not None and counts.get(item.label, 0) >= selection.per_class:
                        continue
                    try:
                        records = [self.ensure("screen", item, s, block=False) for s in screens]
                    except StageFailed as error:
                        excluded.append((item, str(error), "failed"))
                        continue
                    screened += 1
                    bad = [r for r in records if r is not None
                           and not (r["usable"] and (r["correct"] or not selection.correct_only))]
                    if bad:
                        excluded.append((item, bad[0]["reason"] or "not usable", "skipped"))
                        continue
                    if any(r is None for r in records):
                        pending.append(item)
                    else:
                        chosen.append(item)
                        if bar is not None:
                            bar.update(len(chosen) - bar.n)
                    counts[item.label] = counts.get(item.label, 0) + 1
                if not pending:
                    break
                for item in pending:
                    for s in screens:
                        self.ensure("screen", item, s)
        finally:
            if bar is not None:
                bar.close()
        if not chosen:
            what = "answered correctly" if selection.correct_only else "usable"
            raise NoSamples(f"no sample of {self.data} is {what} by {self.model} ({screened} screened); "
                            + ("study them anyway with correct_only=False (make figures CORRECT_ONLY=0, "
                               "hearlib run --include-wrong)" if selection.correct_only else
                               "check that the labels are words the tokenizer can represent"))
        self.excluded = excluded
        if selection.min_per_class is not None:
            chosen = [it for it in chosen if counts[it.label] >= selection.min_per_class]
        return chosen[selection.skip:]

    def _missing_message(self, what: str) -> str:
        command = self.fill_command or (f"python -m hearlib run --model {self.model} --data {self.data} "
                                        f"--out {self.store.root}")
        return f"{what} is not in the store {self.store.root}; fill it with: {command}"

    def close(self) -> None:
        self.claims.close()
