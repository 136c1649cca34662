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

Storage: :mod:`hearlib.store` (atomic folder-per-record, no pickle). The attribution stage *is*
the record of ``python -m hearlib run`` with the same settings (same key, masks and means), so a
sharded collection run precomputes what the notebooks read.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hearlib import collect, paths
from hearlib.analysis import (CRITERIA, criterion_orders, engine_evaluator, image_tokens, min_heads,
                              single_head_delta, text_tokens, top_k_mask, validation_curves,
                              weighted_image_attention)
from hearlib.errors import UserError
from hearlib.masks import sample_rng
from hearlib.prompts import PAPER_PROMPT
from hearlib.store import Store, settings_hash, slug

__all__ = ["Entry", "Study", "open_store", "stack"]
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


class _StoreAdapter:
    """Wraps :class:`hearlib.store.Store` to the ``get(key) -> Entry | None`` / ``put`` interface."""

    def __init__(self, store):
        self.store = store

    def get(self, key: str) -> Entry | None:
        record = self.store.get(key)
        return None if record is None else Entry(dict(record.arrays), dict(record.meta))

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> Entry:
        # study stages are not samples of a `hearlib run`: they stay out of the manifest
        record = self.store.put(key, arrays, meta, mark=False)
        return Entry(dict(record.arrays), dict(record.meta))


def open_store(root: str | Path | None = None) -> _StoreAdapter:
    """The project's store at ``root`` (default ``data/store/study``)."""
    return _StoreAdapter(Store(Path(root) if root is not None else paths.STORE / "study"))


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


# ----------------------------------------------------------------------------- model / data identity

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
        # the same identities as `python -m hearlib run`, so both find each other's records
        self.model_id = collect.model_fingerprint(model)
        self.dataset_id = collect.dataset_id(self.data, self.kind, self.domains)
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

    def _image_root(self) -> Path:
        """The image folder whose last R images are the mean reference images (as hearlib.collect)."""
        if self.kind == "coco":
            items = self.items()
            return Path(items[0].path).parent if items else self.data
        return self.data / "domains" if (self.data / "domains").is_dir() else self.data

    def means(self, prompt: str | None = None):
        """Mean image keys/values for the prompt's prefix, computed once and saved: the same file
        and reference images as ``python -m hearlib run`` (``STORE/_means/...``)."""
        engine = self.engine
        prefix = engine.prefix_hash(prompt)
        if prefix in self._means:
            return self._means[prefix][0]
        cfg = self._collect_config(prompt, 10, 0.75, 0)
        means, spec, _ = collect._load_means(cfg, engine, _SingleProcess(), self.store.store, self.model_id,
                                             self.dataset_id, self._image_root(), [])
        self._means[prefix] = (means, spec)
        return means

    def _means_spec(self) -> dict:
        """What hearlib.collect puts in the settings for dataset means (no engine needed)."""
        if "_spec" not in self._means:
            refs = collect.mean_reference_images(self._image_root(), self.n_mean_images)
            root = self._image_root()
            names = [str(p.relative_to(root)) if p.is_relative_to(root) else p.name for p in refs]
            digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
            self._means["_spec"] = {"source": "dataset", "n_images": len(refs), "images": digest}
        return self._means["_spec"]

    def _collect_config(self, prompt, n_masks, ratio, seed, include_wrong: bool = False):
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
        key = f"{self.model_id}/{self.dataset_id}/{stage}-{settings_hash(full)}/{slug(item.image_id)}"
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

        This *is* the record of ``python -m hearlib run`` with
        the same settings (same key, same masks from the per-sample seed), read if it exists —
        e.g. precomputed by a sharded ``accelerate launch`` run — or computed with
        :func:`hearlib.collect.compute_sample` and stored under that key. A sample the model
        gets wrong (under this prompt) is stored as ``python -m hearlib run --include-wrong``
        would. ``entry["theta"]`` is the record's ``coef``.
        """
        return self._collected_attribution(item, n_masks, ratio, seed, prompt)

    def _collected_attribution(self, item, n_masks, ratio, seed, prompt) -> Entry:
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
                    settings=settings, settings_hash=settings_hash(settings), run_id="study",
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
