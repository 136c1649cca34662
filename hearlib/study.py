"""The study behind the notebooks: per-sample results, computed once and stored.

A :class:`Study` is one (model, dataset). Its per-sample *stages* each produce one stored record
(arrays + meta) per (model, dataset, sample, stage settings); a notebook asks for a stage, and
the record is read from the store if it exists, or computed with the engine and stored. So a
rerun, or a later notebook that needs the same quantity, computes nothing twice.

Stages (each depends on the ones before it, with the same settings):

``screen``       the unablated forward: predicted token, correctness, text tokens, image count
``attribution``  M head masks (p ablated), π for each, the ElasticNet θ, held-out R²/Pearson,
                 the image attention weight per head (Eq. 10)
``validation``   single-head Δ, faithfulness/completeness curves for the criteria, the orders, x*
``text``         Δ_i for each text token under x*, u*, π(x*, u*)/π(x*)
``image``        image-token masks, π(x*, u*, v), θ^img, R²/Pearson, Eq. 13's w

Settings that enter a record's key: the stage's own parameters (prompt, M, p, seed, ...), the
number of mean images R, the ablation method (``fast``/``literal``) and a stage version. The
batch size does not (it does not change the result). Seeds are per sample
(:func:`hearlib.masks.sample_seed` of the study seed and the sample id), so records do not
depend on which other samples ran or in which order.

Choices (the project's):

* **Reference images for the means**: the last R images of the dataset listing (every image,
  sorted, no single-object filter), i.e. taken from the end while study samples are taken from
  the start. With a dataset of fewer than 2·R images the two overlap; the paper does not say
  whether its 100 mean images were disjoint from its 200 samples.
* **Correct samples**: the paper keeps samples the model answers correctly; :meth:`Study.samples`
  walks the dataset in its sorted order and keeps correct ones (under the paper prompt unless
  told otherwise) until it has ``n``.

Storage: through :mod:`hearlib.store` when it is installed (``Store(root).get/put``), otherwise
through :class:`FolderStore` below (the same atomic folder-per-record layout).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hearlib import paths
from hearlib.analysis import (CRITERIA, criterion_orders, engine_evaluator, image_tokens, min_heads,
                              single_head_delta, text_tokens, top_k_mask, validation_curves,
                              weighted_image_attention)
from hearlib.attribution import fit_attribution
from hearlib.errors import UserError
from hearlib.masks import sample_head_masks, sample_rng

__all__ = ["Entry", "FolderStore", "Study", "open_store", "settings_hash", "stack", "PAPER_PROMPT"]

from hearlib.prompts import PAPER_PROMPT
STAGE_VERSION = {"screen": 1, "attribution": 1, "validation": 1, "text": 1, "image": 1}


# ----------------------------------------------------------------------------- records

@dataclass
class Entry:
    """One stored per-sample record: ``arrays`` (numpy) and ``meta`` (JSON). ``entry[k]`` looks in both."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    def __getitem__(self, key):
        if key in self.arrays:
            return self.arrays[key]
        return self.meta[key]

    def __contains__(self, key) -> bool:
        return key in self.arrays or key in self.meta

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


def settings_hash(settings: dict) -> str:
    """12 hex digits of SHA-256 over the settings as sorted JSON."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    if len(text) > 80 or not text:
        text = text[:60] + "-" + hashlib.sha256(str(text).encode()).hexdigest()[:12]
    return text


class FolderStore:
    """Fallback store: ``root/<key>/`` holds ``<name>.npy`` per array and ``meta.json``.

    A record is written into a temporary folder next to it and renamed into place, so a
    reader never sees a half-written record; arrays load with ``allow_pickle=False``.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _folder(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> Entry | None:
        folder = self._folder(key)
        meta_file = folder / "meta.json"
        if not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text())
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(folder.glob("*.npy"))}
        return Entry(arrays, meta)

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> Entry:
        folder = self._folder(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", np.asarray(array), allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=_jsonable))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return Entry({k: np.asarray(v) for k, v in arrays.items()}, json.loads(json.dumps(meta, default=_jsonable)))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class _StoreAdapter:
    """Wraps :class:`hearlib.store.Store` to the ``get(key) -> Entry | None`` / ``put`` interface."""

    def __init__(self, store):
        self.store = store

    def get(self, key: str) -> Entry | None:
        record = self.store.get(key)
        if record is None:
            return None
        arrays = getattr(record, "arrays", None)
        meta = getattr(record, "meta", None)
        if arrays is None and isinstance(record, dict):
            arrays, meta = record.get("arrays", {}), record.get("meta", {})
        return Entry(dict(arrays or {}), dict(meta or {}))

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> Entry:
        try:   # study stages are not samples of a `hearlib run`: keep them out of the manifest
            self.store.put(key, arrays, meta, mark=False)
        except TypeError:
            self.store.put(key, arrays, meta)
        return Entry({k: np.asarray(v) for k, v in arrays.items()}, json.loads(json.dumps(meta, default=_jsonable)))


def open_store(root: str | Path | None = None):
    """The project's store at ``root`` (default ``data/store``): :mod:`hearlib.store` if present."""
    root = Path(root) if root is not None else paths.STORE / "study"
    if os.environ.get("HEARLIB_STUDY_FOLDER_STORE") != "1":
        try:
            from hearlib.store import Store  # written by the store/collector work (issue 5)
        except ImportError:
            Store = None
        if Store is not None:
            try:
                return _StoreAdapter(Store(root))
            except Exception:   # an incompatible store API falls back to the folder store
                pass
    return FolderStore(root)


class _SingleProcess:
    """The part of accelerate's PartialState that hearlib.collect's means loader uses, for one process."""

    is_main_process = True
    is_local_main_process = True

    @staticmethod
    def main_process_first():
        import contextlib

        return contextlib.nullcontext()


def _attribution_entry(record) -> Entry:
    """A hearlib.collect record as an attribution Entry (``theta`` = ``coef``)."""
    arrays = dict(getattr(record, "arrays", {}) or {})
    meta = dict(getattr(record, "meta", {}) or {})
    if "coef" in arrays and "theta" not in arrays:
        arrays["theta"] = arrays["coef"]
    return Entry(arrays, meta)


def settings_hash_store(settings: dict) -> str:
    from hearlib.store import settings_hash as store_hash

    return store_hash(settings)


# ----------------------------------------------------------------------------- model / data identity

def _model_id(model: str | Path) -> str:
    """Name + fingerprint of a local model folder (so a retrained organism never reuses records)."""
    path = Path(str(model))
    if not path.is_dir():
        return _slug(str(model))
    digest = hashlib.sha256()
    for file in sorted(path.glob("*")):
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
    return f"{_slug(path.name)}-{digest.hexdigest()[:8]}"


def _from_root(path):
    """A relative path that exists under the repository root (notebooks run from anywhere)."""
    text = str(path)
    candidate = Path(text).expanduser()
    if not candidate.is_absolute() and not candidate.exists() and (paths.ROOT / candidate).exists():
        return paths.ROOT / candidate
    if not candidate.is_absolute() and text.startswith(("data/", "./", "figures/", "build/")):
        return paths.ROOT / candidate
    return path


def _interleave(items: Sequence, attributes: Sequence[str]) -> list:
    """Round-robin order: the first item of every group before the second of any.

    With ``("domain", "label")``: apple/clipart, apple/real, apple/sketch, banana/clipart, ...
    then the second image of each; the outer attribute cycles fastest, so any prefix is
    balanced over domains first and labels second.
    """
    keys = [tuple(str(getattr(it, a)) for a in attributes) for it in items]
    within: dict[tuple, int] = {}
    level_values: list[dict[tuple, list]] = [{} for _ in attributes]
    for key in keys:
        for depth in range(len(attributes)):
            values = level_values[depth].setdefault(key[:depth], [])
            if key[depth] not in values:
                values.append(key[depth])
    order = []
    for index, key in enumerate(keys):
        rank = within.get(key, 0)
        within[key] = rank + 1
        value_ranks = [sorted(level_values[d][key[:d]]).index(key[d]) for d in range(len(attributes))]
        order.append(((rank, *reversed(value_ranks)), index))
    return [items[i] for _, i in sorted(order)]


def _dataset_kind(data: Path) -> str:
    if (data / "annotations").is_dir() or (data / "coco").is_dir() or data.suffix == ".json":
        return "coco"
    return "domainnet"


# ----------------------------------------------------------------------------- the study

class Study:
    """Per-sample results of one (model, dataset), read from the store or computed with the engine.

    ``model``: organism folder, checkpoint folder, hub id or registry name (see
    :func:`hearlib.models.load_engine`). ``data``: a COCO-format folder / instances file, a
    DomainNet-layout folder, or a folder from ``python -m hearlib scenes``. ``kind``: ``"coco"``
    or ``"domainnet"`` (default: guessed from the folder). ``domains``: DomainNet domains to use.
    """

    def __init__(self, model: str | Path, data: str | Path, *, kind: str | None = None,
                 domains: Sequence[str] | None = None, store: str | Path | None = None,
                 n_mean_images: int = 100, method: str = "fast", batch_size: int = 64,
                 device: str | None = None, progress: bool = True):
        model, data = _from_root(model), _from_root(data)
        store = _from_root(store) if store is not None else None
        self.model = str(model)
        self.data = Path(data)
        if not self.data.exists():
            raise UserError(f"dataset not found: {self.data}")
        self.kind = kind or _dataset_kind(self.data)
        if self.kind not in ("coco", "domainnet"):
            raise UserError(f"unknown dataset kind {self.kind!r}; use 'coco' or 'domainnet'")
        self.domains = list(domains) if domains else None
        self.store = open_store(store)
        self.n_mean_images = int(n_mean_images)
        self.method = method
        self.batch_size = int(batch_size)
        self.device = device
        self.progress = progress
        try:   # the same identities as `python -m hearlib run`, so both find each other's records
            from hearlib.collect import dataset_id as _collect_dataset_id, model_fingerprint
        except ImportError:
            model_fingerprint = _collect_dataset_id = None
        self.model_id = model_fingerprint(model) if model_fingerprint else _model_id(model)
        data_name = self.data.resolve().name
        if self.kind == "domainnet" and self.domains:
            data_name += "-" + "+".join(self.domains)
        self.dataset_id = (_collect_dataset_id(self.data, self.kind, self.domains) if _collect_dataset_id
                           else f"{self.kind}-{_slug(data_name)}")
        self._engine = None
        self._means: dict[str, Any] = {}
        self._items = None
        self._samples: dict[tuple, Any] = {}

    def __repr__(self) -> str:
        return f"Study(model={self.model_id!r}, dataset={self.dataset_id!r}, R={self.n_mean_images}, method={self.method!r})"

    # -- lazy engine and means ---------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            from hearlib.models import load_engine

            self._engine = load_engine(self.model, device=self.device)
        return self._engine

    def items(self):
        """Every image of the dataset with its label (:class:`hearlib.datasets.ImageRecord`), sorted."""
        if self._items is None:
            from hearlib import datasets

            if self.kind == "coco":
                self._items = datasets.load_coco(self.data)
            else:
                self._items = datasets.load_domainnet(self.data, domains=self.domains)
        return self._items

    def _mean_images(self) -> list[Path]:
        from hearlib.io import image_files

        root = self.data
        if self.kind == "coco" and (root / "coco").is_dir():
            root = root / "coco"
        files = image_files(root)
        if not files:
            raise UserError(f"no images under {root} for the mean keys/values")
        return files[-self.n_mean_images:][::-1]

    def _collect(self):
        """:mod:`hearlib.collect` when it and :mod:`hearlib.store` are in use, else None."""
        if not isinstance(self.store, _StoreAdapter):
            return None
        try:
            from hearlib import collect
        except ImportError:
            return None
        return collect

    def _image_root(self) -> Path:
        """The image folder whose last R images are the mean reference images (as hearlib.collect)."""
        if self.kind == "coco":
            items = self.items()
            return Path(items[0].path).parent if items else self.data
        return self.data / "domains" if (self.data / "domains").is_dir() else self.data

    def means(self, prompt: str | None = None):
        """Mean image keys/values for the prompt's prefix, computed once and saved.

        With :mod:`hearlib.collect` present, the same file and reference images as
        ``python -m hearlib run`` (``STORE/_means/...``), so both share records; otherwise
        under ``data/means``.
        """
        from hearlib.means import MeanKV, compute_means

        engine = self.engine
        prefix = engine.prefix_hash(prompt)
        if prefix in self._means:
            return self._means[prefix][0]
        collect = self._collect()
        if collect is not None:
            cfg = self._collect_config(prompt, 10, 0.75, 0)
            means, spec, meta = collect._load_means(cfg, engine, _SingleProcess(), self.store.store, self.model_id,
                                                    self.dataset_id, self._image_root(), [])
            self._means[prefix] = (means, spec)
            return means
        path = paths.MEANS / self.model_id / f"{self.dataset_id}-{prefix}-R{self.n_mean_images}.safetensors"
        if not path.is_file():
            compute_means(engine, self._mean_images(), prompt=prompt, progress=self.progress).save(path)
        self._means[prefix] = (MeanKV.load(path, engine=engine, prompt=prompt), None)
        return self._means[prefix][0]

    def _means_spec(self) -> dict:
        """What hearlib.collect puts in the settings for dataset means (no engine needed)."""
        if "_spec" not in self._means:
            collect = self._collect()
            refs = collect.mean_reference_images(self._image_root(), self.n_mean_images)
            root = self._image_root()
            names = [str(p.relative_to(root)) if p.is_relative_to(root) else p.name for p in refs]
            digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
            self._means["_spec"] = {"source": "dataset", "n_images": len(refs), "images": digest}
        return self._means["_spec"]

    def _collect_config(self, prompt, n_masks, ratio, seed, include_wrong: bool = False):
        collect = self._collect()
        return collect.CollectConfig(model=self.model, data=self.data, out=self.store.store.root, kind=self.kind,
                                     domains=self.domains, n_masks=int(n_masks), seed=int(seed), ratio=float(ratio),
                                     n_mean_images=self.n_mean_images, batch_size=self.batch_size, prompt=prompt,
                                     method=self.method, include_wrong=include_wrong, device=self.device,
                                     progress=self.progress)

    def prepared(self, item, prompt: str | None = None):
        """The engine's :class:`Sample` for ``item`` (kept in memory for the last few samples)."""
        key = (item.image_id, prompt)
        if key not in self._samples:
            if len(self._samples) >= 4:
                self._samples.pop(next(iter(self._samples)))
            self._samples[key] = self.engine.prepare(item.path, answer=item.label, prompt=prompt,
                                                     sample_id=item.image_id)
        return self._samples[key]

    def record(self, item, prompt: str | None = None):
        """The engine's unablated :class:`Record` (attention statistics, head outputs)."""
        return self.engine.record(self.prepared(item, prompt))

    def evaluator(self, item, prompt: str | None = None):
        """``evaluate(heads, text, image) -> π`` for ``item`` (see :mod:`hearlib.analysis`)."""
        return engine_evaluator(self.engine, self.prepared(item, prompt), self.means(prompt),
                                method=self.method, batch_size=self.batch_size)

    # -- store plumbing ----------------------------------------------------------------
    def _key(self, stage: str, settings: dict, item) -> tuple[str, dict]:
        full = {"stage": stage, "version": STAGE_VERSION[stage], **settings}
        if stage != "screen":
            full.update(method=self.method, n_mean_images=self.n_mean_images)
        key = f"{self.model_id}/{self.dataset_id}/{stage}-{settings_hash(full)}/{_slug(item.image_id)}"
        return key, full

    def _cached(self, stage: str, settings: dict, item, compute) -> Entry:
        key, full = self._key(stage, settings, item)
        entry = self.store.get(key)
        if entry is not None:
            return entry
        arrays, meta = compute()
        meta = {**meta, "settings": full, "model": self.model_id, "dataset": self.dataset_id,
                "sample": item.image_id, "label": item.label, "supercategory": item.supercategory,
                "domain": item.domain, "path": str(item.path)}
        return self.store.put(key, arrays, meta)

    def many(self, stage: str, items: Iterable, desc: str | None = None, **settings) -> list[Entry]:
        """Run ``stage`` (a method name) on every item with a progress bar."""
        items = list(items)
        method = getattr(self, stage)
        iterator = items
        if self.progress:
            from tqdm.auto import tqdm
            iterator = tqdm(items, desc=desc or f"{stage} ({self.model_id})", unit="sample")
        return [method(item, **settings) for item in iterator]

    # -- stages --------------------------------------------------------------------------
    def screen(self, item, prompt: str | None = None) -> Entry:
        """Unablated forward: does the model answer ``item.label``?"""

        def compute():
            engine = self.engine
            sample = self.prepared(item, prompt)
            record = engine.record(sample)
            ids = sample.inputs["input_ids"][0].tolist()
            text_tokens_ = engine.tokenizer.convert_ids_to_tokens(ids[sample.text_start:])
            predicted = engine.tokenizer.convert_ids_to_tokens([record.predicted_id])[0]
            meta = {"correct": bool(record.correct), "predicted": predicted, "logit": float(record.logit),
                    "answer_tokens": list(sample.answer_tokens), "text_tokens": list(text_tokens_),
                    "n_text": sample.n_text, "n_image": sample.n_image,
                    "n_layers": engine.n_layers, "n_heads": engine.n_heads,
                    "prompt": sample.prompt}
            return {}, meta

        return self._cached("screen", {"prompt": prompt or PAPER_PROMPT}, item, compute)

    def samples(self, n: int | None, correct_only: bool = True, prompt: str | None = None,
                per_class: int | None = None, min_per_class: int | None = None,
                interleave: Sequence[str] | None = None) -> list:
        """The first ``n`` dataset items (sorted order) the model answers correctly.

        ``per_class`` caps the samples per label (the paper's t-SNE: up to 15 per object);
        ``min_per_class`` then drops labels with fewer (the paper: objects with ≥ 10 samples).
        ``interleave`` (e.g. ``("domain", "label")``) walks the items round-robin over the groups
        of those attributes, in sorted group order, instead of the listing order (DomainNet's
        listing is sorted by domain and class, so its first ``n`` would be one class).
        """
        chosen, counts = [], {}
        iterator = self.items()
        if interleave:
            iterator = _interleave(iterator, interleave)
        bar = None
        if self.progress and n is not None:
            from tqdm.auto import tqdm
            bar = tqdm(total=n, desc=f"screen ({self.model_id})", unit="sample")
        for item in iterator:
            if n is not None and len(chosen) >= n:
                break
            if per_class is not None and counts.get(item.label, 0) >= per_class:
                continue
            if correct_only and not self.screen(item, prompt)["correct"]:
                continue
            chosen.append(item)
            counts[item.label] = counts.get(item.label, 0) + 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if min_per_class is not None:
            chosen = [it for it in chosen if counts[it.label] >= min_per_class]
        return chosen

    def attribution(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0,
                    prompt: str | None = None) -> Entry:
        """HeAr for one sample: masks, π, θ, held-out R² and Pearson, Eq. 10 attention weight.

        With :mod:`hearlib.collect` present this *is* the record of ``python -m hearlib run`` with
        the same settings (same key, same masks from the per-sample seed), read if it exists —
        e.g. precomputed by a sharded ``accelerate launch`` run — or computed with
        :func:`hearlib.collect.compute_sample` and stored under that key. A sample the model
        gets wrong (under this prompt) is stored as ``python -m hearlib run --include-wrong``
        would. ``entry["theta"]`` is the record's ``coef``.
        """
        collect = self._collect()
        if collect is not None:
            return self._collected_attribution(collect, item, n_masks, ratio, seed, prompt)
        settings = {"prompt": prompt or PAPER_PROMPT, "n_masks": int(n_masks), "ratio": float(ratio), "seed": int(seed)}

        def compute():
            engine = self.engine
            if n_masks < 10:
                raise UserError("n_masks must be at least 10 (the fit holds out 20% of them)")
            sample = self.prepared(item, prompt)
            means = self.means(prompt)
            record = engine.record(sample)
            rng = sample_rng(seed, item.image_id, "heads")
            masks = sample_head_masks(engine.n_total_heads, n_masks, ratio, rng)
            intact, ablated = engine.reference_logits(sample, means, method=self.method)
            pi = engine.normalized(sample, means, masks, method=self.method, batch_size=self.batch_size,
                                   progress=self.progress and n_masks > 2000)
            fit = fit_attribution(masks, pi, seed=seed)
            arrays = {"masks": masks, "pi": pi.astype(np.float64), "theta": fit.coef,
                      "image_attention": np.asarray(record.image_attention, dtype=np.float64)}
            meta = {"r2": fit.r2, "pearson": fit.pearson, "intercept": fit.intercept, "converged": fit.converged,
                    "n_train": fit.n_train, "n_test": fit.n_test, "logit_intact": intact, "logit_ablated": ablated,
                    "n_layers": engine.n_layers, "n_heads": engine.n_heads, "correct": bool(record.correct)}
            return arrays, meta

        return self._cached("attribution", settings, item, compute)

    def _collected_attribution(self, collect, item, n_masks, ratio, seed, prompt) -> Entry:
        store = self.store.store
        spec = self._means_spec()
        keys = {}
        for include_wrong in (False, True):
            settings = self._collect_config(prompt, n_masks, ratio, seed, include_wrong).settings(spec)
            keys[include_wrong] = (store.key(self.model_id, self.dataset_id, str(item.image_id), settings), settings)
            record = store.get(keys[include_wrong][0])
            if record is not None:
                return _attribution_entry(record)
        include_wrong = not self.screen(item, prompt)["correct"]
        key, settings = keys[include_wrong]
        cfg = self._collect_config(prompt, n_masks, ratio, seed, include_wrong)
        cfg.validate()
        means = self.means(prompt)
        arrays, meta = collect.compute_sample(self.engine, means, item, cfg, {"batch_size": self.batch_size})
        meta.update(model=str(self.model), model_id=self.model_id, dataset=self.dataset_id, data=str(self.data),
                    settings=settings, settings_hash=settings_hash_store(settings), run_id="study",
                    computed_at=time.time(), process_index=0, num_processes=1, device=str(self.engine.device))
        record = store.put(key, arrays, meta, mark=False)
        store.mark(key, "finished", "", info={"sample": str(item.image_id), "label": item.label,
                                              "r2": meta["r2"], "n_masks": meta["n_masks"]})
        return _attribution_entry(store.get(key) or record)

    def validation(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0,
                   prompt: str | None = None, threshold: float = 0.8,
                   criteria: Sequence[str] = CRITERIA) -> Entry:
        """Single-head Δ, faithfulness/completeness curves per criterion, x* (HeAr, faithfulness > threshold)."""
        criteria = tuple(criteria)
        if "HeAr" not in criteria:
            raise ValueError("validation needs the HeAr criterion (x* comes from it)")
        settings = {"prompt": prompt or PAPER_PROMPT, "n_masks": int(n_masks), "ratio": float(ratio),
                    "seed": int(seed), "threshold": float(threshold), "criteria": list(criteria)}

        def compute():
            attr = self.attribution(item, n_masks, ratio, seed, prompt)
            theta = attr["theta"]
            evaluate = self.evaluator(item, prompt)
            n = theta.size
            delta = single_head_delta(evaluate, n)   # always: Fig. 7 reads it
            orders = criterion_orders(theta=theta, attention=attr["image_attention"], delta=delta,
                                      rng=sample_rng(seed, item.image_id, "random-order"), n_heads=n)
            faith = np.empty((len(criteria), n))
            comp = np.empty((len(criteria), n))
            order_rows = np.empty((len(criteria), n), dtype=np.int64)
            for row, name in enumerate(criteria):
                curves = validation_curves(evaluate, orders[name])
                faith[row], comp[row], order_rows[row] = curves.faithfulness, curves.completeness, curves.order
            k = min_heads(faith[criteria.index("HeAr")], threshold, "faithfulness")
            x_star = top_k_mask(theta, min(k, n))
            arrays = {"delta": delta, "faithfulness": faith, "completeness": comp, "orders": order_rows,
                      "x_star": x_star}
            meta = {"criteria": list(criteria), "k_star": int(min(k, n)), "k_star_raw": int(k)}
            return arrays, meta

        return self._cached("validation", settings, item, compute)

    def text(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0, prompt: str | None = None,
             threshold: float = 0.8, token_threshold: float = 0.05) -> Entry:
        """Text tokens under x*: Δ_i, u* (Δ_i > token_threshold), π(x*, u*)/π(x*)."""
        settings = {"prompt": prompt or PAPER_PROMPT, "n_masks": int(n_masks), "ratio": float(ratio),
                    "seed": int(seed), "threshold": float(threshold), "token_threshold": float(token_threshold)}

        def compute():
            valid = self.validation(item, n_masks, ratio, seed, prompt, threshold)
            screen = self.screen(item, prompt)
            res = text_tokens(self.evaluator(item, prompt), valid["x_star"], int(screen["n_text"]), token_threshold)
            arrays = {"delta_text": res.delta, "u_star": res.u_star}
            meta = {"pi_star": res.pi_star, "pi_u_star": res.pi_u_star, "ratio": res.ratio,
                    "text_tokens": screen["text_tokens"]}
            return arrays, meta

        return self._cached("text", settings, item, compute)

    def image(self, item, n_masks: int = 10_000, ratio: float = 0.75, seed: int = 0, prompt: str | None = None,
              threshold: float = 0.8, token_threshold: float = 0.05, n_image_masks: int = 10_000,
              image_ratio: float = 0.75) -> Entry:
        """Image tokens under (x*, u*): θ^img from the ElasticNet over v, and Eq. 13's weighted attention w."""
        settings = {"prompt": prompt or PAPER_PROMPT, "n_masks": int(n_masks), "ratio": float(ratio),
                    "seed": int(seed), "threshold": float(threshold), "token_threshold": float(token_threshold),
                    "n_image_masks": int(n_image_masks), "image_ratio": float(image_ratio)}

        def compute():
            attr = self.attribution(item, n_masks, ratio, seed, prompt)
            valid = self.validation(item, n_masks, ratio, seed, prompt, threshold)
            text = self.text(item, n_masks, ratio, seed, prompt, threshold, token_threshold)
            record = self.record(item, prompt)
            n_image = record.text_to_image.shape[-1]
            res = image_tokens(self.evaluator(item, prompt), valid["x_star"], text["u_star"], n_image,
                               n_image_masks, sample_rng(seed, item.image_id, "image"), ratio=image_ratio, seed=seed)
            w = weighted_image_attention(valid["x_star"], attr["theta"], text["u_star"], text["delta_text"],
                                         record.text_to_image)
            side = int(round(math.sqrt(n_image)))
            grid = [side, side] if side * side == n_image else [1, n_image]
            arrays = {"theta_img": res.theta, "w": w, "masks": res.masks, "pi": res.pi}
            meta = {"r2": res.fit.r2, "pearson": res.fit.pearson, "grid": grid}
            return arrays, meta

        return self._cached("image", settings, item, compute)

    # -- convenience ---------------------------------------------------------------------
    def logit_lens(self, item, n: int, k: int = 10, prompt: str | None = None) -> list[tuple[str, float]]:
        """Top-k tokens of head n's output at the last position (Fig. 8)."""
        engine = self.engine
        layer, head = divmod(int(n), engine.n_heads)
        return engine.logit_lens(self.record(item, prompt), layer, head, k=k)


def stack(entries: Sequence[Entry], key: str) -> np.ndarray:
    """``np.stack([e[key] for e in entries])``."""
    return np.stack([np.asarray(e[key]) for e in entries])
