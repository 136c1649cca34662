"""The collection step behind the notebooks: ``python -m hearlib run``.

For every sample of a COCO-format or DomainNet-layout dataset: the unablated forward
(correctness), M random head masks from a per-sample seed, the adjusted answer logit under each
mask (the engine's fast path), π, and the paper's ElasticNet θ with held-out R² and Pearson.
One record per (model, dataset, sample, settings) goes into a :class:`hearlib.store.Store`.

Sharding. ``accelerate launch --num_processes N ... -m hearlib run ...`` starts N processes;
each takes the samples ``i`` with ``i % N == process_index`` (a strided split of the sample
list) on the device accelerate gives it. Masks come from :func:`hearlib.masks.sample_rng` of
(seed, sample id), so a record does not depend on the process, the process count or the
order: a sharded run writes the same records as a single process. On a machine without a GPU,
``accelerate launch --multi_gpu --num_processes N`` starts N CPU processes (accelerate 1.15
runs ``--cpu`` with N > 1 only through mpirun; without it, one process does everything).

Resuming. A sample whose record exists, or that was skipped (the model answers wrongly, it
has no annotation), is not computed again; failed samples are retried. Killing a run at any
moment leaves finished records intact and no half-written one (see :mod:`hearlib.store`).

Mean keys/values. ``--means FILE`` uses a file from ``python -m hearlib means`` (refused with
:class:`hearlib.errors.MeansMismatch` if it belongs to another model or prompt). Without it,
the main process computes them once from R reference images and saves them under
``STORE/_means/``; the other processes wait for it. Reference images (the project's choice,
the same as :mod:`hearlib.study`): the last R readable images of the dataset's image folder
in sorted order, while samples are taken from the start of the listing; on a dataset with
fewer than R + K images the two overlap (recorded in the meta as ``means_overlap``).

Mask count. Every record holds the held-out R² of the fit on the first m masks for a few m
(``r2_counts``, ``r2_curve``; masks are drawn row by row from one stream, so a prefix is what a
smaller M would have drawn). ``--adaptive`` draws masks in chunks and stops once R² has moved
by less than ``--adaptive-tol`` over the last ``--adaptive-patience`` chunks
(:func:`hearlib.attribution.stable_mask_count`), or at M.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hearlib.errors import MeansMismatch, UserError
from hearlib.store import Store, settings_hash, slug

__all__ = ["CollectConfig", "collect", "register", "sample_key", "model_fingerprint", "dataset_id",
           "curve_counts", "mask_logits"]

COLLECT_VERSION = 1
CURVE_COUNTS = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)


# ----------------------------------------------------------------------------- configuration

@dataclass
class CollectConfig:
    model: str
    data: Path
    out: Path
    kind: str | None = None                 # "coco" | "domainnet" | None (guess)
    domains: Sequence[str] | None = None
    split: str | None = None
    n_samples: int | None = None
    n_masks: int = 10_000
    seed: int = 0
    ratio: float = 0.75
    means: Path | None = None
    n_mean_images: int = 100
    batch_size: int = 64
    prompt: str | None = None
    method: str = "fast"
    include_wrong: bool = False
    adaptive: bool = False
    adaptive_chunk: int = 500
    adaptive_tol: float = 0.01
    adaptive_patience: int = 2
    retry_failed: bool = True
    device: str | None = None
    progress: bool = True
    delay: float = 0.0                      # seconds of sleep per computed sample (tests only)
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.n_samples is not None and self.n_samples < 1:
            raise UserError("--n-samples must be at least 1")
        if self.n_masks < 10:
            raise UserError("--n-masks must be at least 10 (the fit holds out 20% of them)")
        if not 0.0 < self.ratio < 1.0:
            raise UserError("--ablation-ratio must lie strictly between 0 and 1")
        if self.seed < 0:
            raise UserError("--seed must be a non-negative integer")
        if self.n_mean_images < 1:
            raise UserError("--n-mean-images must be at least 1")
        if self.batch_size < 1:
            raise UserError("--batch-size must be at least 1")
        if self.method not in ("fast", "literal"):
            raise UserError("--method must be 'fast' or 'literal'")
        if self.adaptive and (self.adaptive_chunk < 10 or self.adaptive_patience < 1 or self.adaptive_tol <= 0):
            raise UserError("--adaptive needs --adaptive-chunk >= 10, --adaptive-patience >= 1, --adaptive-tol > 0")
        if not Path(self.data).exists():
            raise UserError(f"dataset not found: {self.data}")
        if self.means is not None and not Path(self.means).is_file():
            raise UserError(f"means file not found: {self.means}")

    def settings(self, means_spec: dict) -> dict:
        """What enters the record key: everything that changes a record's content."""
        from hearlib.prompts import PAPER_PROMPT

        out = {"collect_version": COLLECT_VERSION, "prompt": self.prompt or PAPER_PROMPT,
               "n_masks": int(self.n_masks), "ratio": float(self.ratio), "seed": int(self.seed),
               "method": self.method, "means": means_spec, "include_wrong": bool(self.include_wrong)}
        if self.adaptive:
            out["adaptive"] = {"chunk": int(self.adaptive_chunk), "tol": float(self.adaptive_tol),
                               "patience": int(self.adaptive_patience)}
        return out


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


def sample_key(store: Store, model_id: str, data_id: str, sample_id: str, settings: dict) -> str:
    return store.key(model_id, data_id, sample_id, settings)


# ----------------------------------------------------------------------------- dataset

@dataclass
class Excluded:
    image_id: str
    path: str
    reason: str


def _coco_root(data: Path) -> Path:
    return data / "coco" if (data / "coco").is_dir() and not (data / "annotations").is_dir() else data


def load_items(cfg: CollectConfig, kind: str) -> tuple[list, list[Excluded], Path]:
    """(samples in run order, images of the listing passed over with the reason, image folder)."""
    from hearlib import datasets

    data = Path(cfg.data)
    if kind == "coco":
        root = data if data.suffix == ".json" else _coco_root(data)
        items = datasets.load_coco(root, split=cfg.split)
        excluded = _coco_excluded(root, cfg.split, items)
        image_root = Path(items[0].path).parent if items else root
        if cfg.n_samples is not None:
            items = items[: cfg.n_samples]
            if items:
                last = _numeric(items[-1].image_id)
                excluded = [e for e in excluded if _numeric(e.image_id) <= last]
    elif kind == "domainnet":
        items = datasets.load_domainnet(data, domains=list(cfg.domains) if cfg.domains else None)
        excluded = []
        image_root = data / "domains" if (data / "domains").is_dir() else data
        # interleave (domain, class) groups so that the first K samples span every class
        groups: dict[tuple, list] = {}
        for it in items:
            groups.setdefault((str(it.domain), str(it.label)), []).append(it)
        lists = [groups[k] for k in sorted(groups)]
        items = [lst[i] for i in range(max(map(len, lists), default=0)) for lst in lists if i < len(lst)]
        if cfg.n_samples is not None:
            items = items[: cfg.n_samples]
    else:
        raise UserError(f"unknown dataset kind {kind!r}; use 'coco' or 'domainnet'")
    if not items:
        raise UserError(f"no usable samples in {data} ({len(excluded)} images passed over)")
    return items, excluded, image_root


def _numeric(image_id: str):
    try:
        return (0, int(image_id), "")
    except ValueError:
        return (1, 0, str(image_id))


def _coco_excluded(root: Path, split: str | None, kept: list) -> list[Excluded]:
    """Images of the annotation file that ``load_coco`` passed over, and why."""
    from hearlib import datasets

    try:
        ann_file, images = datasets._coco_files(root, None, split)
        coco = json.loads(Path(ann_file).read_text())
    except Exception:   # the loader already accepted the folder; the report is best effort
        return []
    kept_ids = {str(it.image_id) for it in kept}
    n_anns: dict = {}
    for ann in coco.get("annotations", []):
        n_anns[ann.get("image_id")] = n_anns.get(ann.get("image_id"), 0) + 1
    out = []
    for info in sorted(coco.get("images", []), key=lambda i: _numeric(str(i.get("id")))):
        image_id = str(info.get("id"))
        if image_id in kept_ids:
            continue
        count = n_anns.get(info.get("id"), 0)
        reason = ("no annotations: nothing to ask about" if count == 0 else
                  f"no single main object ({count} annotations; see hearlib.datasets.main_object)")
        out.append(Excluded(image_id, str(Path(images) / str(info.get("file_name", ""))), reason))
    return out


def _readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:
        return False


def mean_reference_images(image_root: Path, n: int) -> list[Path]:
    """The last ``n`` readable images below ``image_root`` in sorted order (see module docstring)."""
    from hearlib.io import image_files

    files = image_files(image_root)
    chosen = []
    for path in reversed(files):
        if len(chosen) >= n:
            break
        if _readable(path):
            chosen.append(path)
    if not chosen:
        raise UserError(f"no readable images under {image_root} for the mean keys/values")
    return chosen


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- masks → logits

def curve_counts(n_masks: int) -> list[int]:
    """Mask counts at which the R²(M) curve is reported: a 1-2-5 ladder below M, then M."""
    return [c for c in CURVE_COUNTS if c < n_masks] + [int(n_masks)]


def mask_logits(engine, sample, means, masks: np.ndarray, batch_size: int, method: str = "fast",
                stats: dict | None = None) -> np.ndarray:
    """Adjusted logits for every mask row, ``batch_size`` masks per engine call.

    On ``torch.OutOfMemoryError`` the batch is halved (and stays halved: ``stats["batch_size"]``
    carries it to the next sample) and the failed batch is run again; at batch 1 the error is
    raised."""
    import torch

    stats = stats if stats is not None else {}
    batch = int(stats.get("batch_size", batch_size))
    out = np.empty(masks.shape[0], dtype=np.float64)
    start = 0
    while start < masks.shape[0]:
        stop = min(start + batch, masks.shape[0])
        try:
            out[start:stop] = engine.logits(sample, means, masks[start:stop], method=method,
                                            batch_size=stop - start)
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            stats["oom_halvings"] = stats.get("oom_halvings", 0) + 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            warnings.warn(f"out of memory: mask batch halved to {batch}", RuntimeWarning, stacklevel=2)
            continue
        start = stop
    stats["batch_size"] = batch
    return out


# ----------------------------------------------------------------------------- one sample

class SampleSkipped(Exception):
    def __init__(self, reason: str, info: dict):
        super().__init__(reason)
        self.reason, self.info = reason, info


class SampleFailed(Exception):
    pass


def compute_sample(engine, means, item, cfg: CollectConfig, stats: dict) -> tuple[dict, dict]:
    """Arrays and meta of one sample's record; raises SampleSkipped / SampleFailed / UserError."""
    from hearlib.attribution import fit_attribution, r2_by_mask_count, stable_mask_count
    from hearlib.masks import sample_head_masks, sample_rng

    started = time.perf_counter()
    sample = engine.prepare(item.path, answer=item.label, prompt=cfg.prompt, sample_id=str(item.image_id))
    record = engine.record(sample)
    tokenizer = engine.tokenizer
    predicted = tokenizer.convert_ids_to_tokens([record.predicted_id])[0]
    answer_token = sample.answer_tokens[0]
    correct = record.predicted_id == sample.answer_id
    info = {"sample": str(item.image_id), "label": item.label, "predicted": predicted,
            "answer_token": answer_token, "logit": float(record.logit)}
    if not correct and not cfg.include_wrong:
        raise SampleSkipped(f"model answers {predicted!r}, not {answer_token!r} "
                            "(the paper keeps correctly answered samples only)", info)

    intact, ablated = engine.reference_logits(sample, means, method=cfg.method)
    if not np.isfinite(intact - ablated) or intact == ablated:
        raise SampleFailed("ablating every head leaves the answer logit unchanged (ℓ(1) = ℓ(0)); π is undefined")
    n_heads = engine.n_total_heads
    rng = sample_rng(cfg.seed, str(item.image_id), "heads")
    adaptive_stop = None
    if cfg.adaptive:
        chunks_m, chunks_l, counts, curve = [], [], [], []
        drawn = 0
        while drawn < cfg.n_masks:
            size = min(cfg.adaptive_chunk, cfg.n_masks - drawn)
            chunk = sample_head_masks(n_heads, size, cfg.ratio, rng)
            chunks_m.append(chunk)
            chunks_l.append(mask_logits(engine, sample, means, chunk, cfg.batch_size, cfg.method, stats))
            drawn += size
            masks_so_far = np.concatenate(chunks_m)
            pi_so_far = (np.concatenate(chunks_l) - ablated) / (intact - ablated)
            counts.append(drawn)
            curve.append(fit_attribution(masks_so_far, pi_so_far, seed=cfg.seed).r2)
            adaptive_stop = stable_mask_count(curve, tol=cfg.adaptive_tol, counts=counts,
                                              patience=cfg.adaptive_patience)
            if adaptive_stop is not None:
                break
        masks = np.concatenate(chunks_m)
        logits = np.concatenate(chunks_l)
        r2_counts, r2_curve = np.asarray(counts, dtype=np.int64), np.asarray(curve, dtype=np.float64)
    else:
        masks = sample_head_masks(n_heads, cfg.n_masks, cfg.ratio, rng)
        logits = mask_logits(engine, sample, means, masks, cfg.batch_size, cfg.method, stats)
    pi = (logits - ablated) / (intact - ablated)
    fit = fit_attribution(masks, pi, seed=cfg.seed)
    if not cfg.adaptive:
        r2_counts = np.asarray(curve_counts(masks.shape[0]), dtype=np.int64)
        r2_curve = np.empty(r2_counts.size)
        r2_curve[:-1] = r2_by_mask_count(masks, pi, r2_counts[:-1].tolist(), seed=cfg.seed)
        r2_curve[-1] = fit.r2
    seconds = time.perf_counter() - started

    arrays = {
        "masks": masks.astype(bool), "logits": logits.astype(np.float64), "pi": pi.astype(np.float64),
        "coef": np.asarray(fit.coef, dtype=np.float64),
        "image_attention": np.asarray(record.image_attention, dtype=np.float64),
        "logit_intact": np.float64(intact), "logit_ablated": np.float64(ablated),
        "logit_unablated": np.float64(record.logit),
        "intercept": np.float64(fit.intercept), "r2": np.float64(fit.r2), "pearson": np.float64(fit.pearson),
        "answer_ids": np.asarray(tokenizer.convert_tokens_to_ids(sample.answer_tokens), dtype=np.int64),
        "r2_counts": r2_counts, "r2_curve": r2_curve,
    }
    multi = len(sample.answer_tokens) > 1
    meta = {
        "sample": str(item.image_id), "label": item.label, "supercategory": item.supercategory,
        "domain": item.domain, "path": str(item.path), "prompt": sample.prompt,
        "answer_tokens": list(sample.answer_tokens), "answer_token": answer_token,
        "answer_id": int(sample.answer_id), "answer_multi_token": multi,
        "answer_note": (f"the answer {item.label!r} is {len(sample.answer_tokens)} tokens "
                        f"{sample.answer_tokens}; the first, {answer_token!r}, is scored") if multi else "",
        "predicted": predicted, "predicted_id": int(record.predicted_id), "correct": bool(correct),
        "n_layers": engine.n_layers, "n_heads": engine.n_heads, "n_text": sample.n_text,
        "n_image": sample.n_image, "n_masks": int(masks.shape[0]), "n_masks_requested": int(cfg.n_masks),
        "adaptive": bool(cfg.adaptive), "adaptive_stop": adaptive_stop,
        "r2": float(fit.r2), "pearson": float(fit.pearson), "intercept": float(fit.intercept),
        "converged": bool(fit.converged), "n_train": fit.n_train, "n_test": fit.n_test,
        "logit_intact": float(intact), "logit_ablated": float(ablated), "logit_unablated": float(record.logit),
        "seconds": seconds, "masks_per_second": masks.shape[0] / seconds if seconds > 0 else None,
        "batch_size": int(stats.get("batch_size", cfg.batch_size)),
        "oom_halvings": int(stats.get("oom_halvings", 0)),
    }
    return arrays, meta


# ----------------------------------------------------------------------------- the run

def _distributed_state(device: str | None):
    """accelerate's PartialState (process_index, num_processes, device) for this process."""
    import torch
    from accelerate import PartialState

    use_cpu = (os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
               or (device is not None and str(device).startswith("cpu")) or not torch.cuda.is_available())
    return PartialState(cpu=use_cpu)


def _load_means(cfg: CollectConfig, engine, state, store: Store, model_id: str, data_id: str,
                image_root: Path, samples: list):
    from hearlib.means import MeanKV, compute_means

    if cfg.means is not None:
        means = MeanKV.load(cfg.means, engine=engine, prompt=cfg.prompt)
        spec = {"file_sha256": _file_sha256(Path(cfg.means))}
        return means, spec, {"means_path": str(cfg.means), "n_mean_images": means.n_images, "means_overlap": None}
    references = mean_reference_images(image_root, cfg.n_mean_images)
    names = [str(p.relative_to(image_root)) if p.is_relative_to(image_root) else p.name for p in references]
    images_hash = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    prefix = engine.prefix_hash(cfg.prompt)
    path = store.root / "_means" / slug(model_id) / f"{data_id}-{prefix}-R{len(references)}-{images_hash}.safetensors"
    with state.main_process_first():
        if not path.is_file():
            if state.is_main_process:
                means = compute_means(engine, references, prompt=cfg.prompt,
                                      progress=cfg.progress and state.is_local_main_process)
                means.save(path)
            else:     # the main process failed to write it; compute here rather than hang
                compute_means(engine, references, prompt=cfg.prompt, progress=False).save(path)
    means = MeanKV.load(path, engine=engine, prompt=cfg.prompt)
    overlap = len({str(p) for p in references} & {str(Path(it.path)) for it in samples})
    spec = {"source": "dataset", "n_images": len(references), "images": images_hash}
    return means, spec, {"means_path": str(path), "n_mean_images": len(references), "means_overlap": overlap}


def collect(cfg: CollectConfig) -> dict:
    """Run the collection (this process's share). Returns counts for this process."""
    import torch

    cfg.validate()
    state = _distributed_state(cfg.device)
    rank, world = state.process_index, state.num_processes
    device = cfg.device or str(state.device)
    main = state.is_main_process
    log = _Log(main and cfg.progress)

    kind = cfg.kind or dataset_kind(Path(cfg.data))
    items, excluded, image_root = load_items(cfg, kind)
    data_id = dataset_id(Path(cfg.data), kind, cfg.domains)
    model_id = model_fingerprint(cfg.model)
    store = Store(cfg.out)

    from hearlib.models import load_engine

    engine = load_engine(cfg.model, device=device)
    means, means_spec, means_meta = _load_means(cfg, engine, state, store, model_id, data_id, image_root, items)
    settings = cfg.settings(means_spec)
    digest = settings_hash(settings)
    run_id = uuid.uuid4().hex[:12]

    if main and excluded:
        for ex in excluded:
            key = store.key(model_id, data_id, ex.image_id, settings)
            if store.status(key) is None:
                store.mark(key, "skipped", ex.reason, info={"sample": ex.image_id, "path": ex.path})
        log.write(f"{len(excluded)} image(s) of the listing not evaluated (no annotations / no single "
                  "main object); see the manifest")

    mine = list(range(rank, len(items), world))
    counts = {"finished": 0, "earlier": 0, "skipped": 0, "failed": 0}
    stats: dict = {"batch_size": cfg.batch_size}
    bar = None
    if main and cfg.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(mine), desc=f"samples (process {rank + 1}/{world})", unit="sample")
    try:
        for index in mine:
            item = items[index]
            key = store.key(model_id, data_id, str(item.image_id), settings)
            status = store.status(key)
            if store.exists(key) or (status is not None and status["status"] == "skipped") or (
                    status is not None and status["status"] == "failed" and not cfg.retry_failed):
                counts["earlier"] += 1
                _tick(bar, counts)
                continue
            label = f"sample {item.image_id} ({item.label})"
            try:
                arrays, meta = compute_sample(engine, means, item, cfg, stats)
            except SampleSkipped as skip:
                store.mark(key, "skipped", skip.reason, info=skip.info)
                counts["skipped"] += 1
                log.write(f"{label}: skipped: {skip.reason}")
            except MeansMismatch:
                raise
            except (UserError, SampleFailed, torch.OutOfMemoryError) as error:
                reason = str(error) if not isinstance(error, torch.OutOfMemoryError) else \
                    f"out of memory even with one mask per batch: {error}"
                store.mark(key, "failed", reason, info={"sample": str(item.image_id), "label": item.label,
                                                       "path": str(item.path)})
                counts["failed"] += 1
                log.write(f"{label}: failed: {reason}")
            except Exception as error:   # noqa: BLE001 - one sample never stops the run
                reason = f"{type(error).__name__}: {error}"
                store.mark(key, "failed", reason, info={"sample": str(item.image_id), "label": item.label,
                                                       "path": str(item.path),
                                                       "traceback": traceback.format_exc(limit=8)})
                counts["failed"] += 1
                log.write(f"{label}: failed: {reason}")
            else:
                if meta["answer_multi_token"]:
                    log.write(f"{label}: note: {meta['answer_note']}")
                meta.update(model=str(cfg.model), model_id=model_id, dataset=data_id, data=str(cfg.data),
                            settings=settings, settings_hash=digest, run_id=run_id, computed_at=time.time(),
                            process_index=rank, num_processes=world, device=device, **means_meta)
                store.put(key, arrays, meta, mark=False)
                store.mark(key, "finished", "", info={"sample": str(item.image_id), "label": item.label,
                                                      "r2": meta["r2"], "n_masks": meta["n_masks"]})
                counts["finished"] += 1
                if cfg.delay:
                    time.sleep(cfg.delay)
            _tick(bar, counts)
    finally:
        if bar is not None:
            bar.close()
    print(f"hearlib run: process {rank + 1}/{world}: {counts['finished']} finished, {counts['skipped']} skipped, "
          f"{counts['failed']} failed, {counts['earlier']} done earlier; store {store.root} "
          f"({model_id}/{data_id}/{digest})", file=sys.stderr, flush=True)
    return {**counts, "model_id": model_id, "dataset": data_id, "settings_hash": digest,
            "prefix": f"{slug(model_id)}/{slug(data_id)}/{digest}/", "process_index": rank, "num_processes": world}


class _Log:
    def __init__(self, use_tqdm: bool):
        self.use_tqdm = use_tqdm

    def write(self, text: str) -> None:
        line = f"hearlib run: {text}"
        if self.use_tqdm:
            from tqdm.auto import tqdm
            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)


def _tick(bar, counts) -> None:
    if bar is not None:
        bar.set_postfix(done=counts["finished"], skipped=counts["skipped"], failed=counts["failed"],
                        earlier=counts["earlier"], refresh=False)
        bar.update(1)


# ----------------------------------------------------------------------------- command line

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="collect per-sample HeAr records into a store (shard with accelerate launch)",
        description="Per sample: unablated forward (correct samples only), M head masks, the fast "
                    "mean-ablated logits, π and the ElasticNet θ; one atomic record per sample. "
                    "Resumable; shard with `accelerate launch --num_processes N -m hearlib run ...`.")
    p.add_argument("--model", required=True, help="model folder, hub id or registry name")
    p.add_argument("--data", required=True, type=Path, help="COCO-format folder/instances file or DomainNet-layout folder")
    p.add_argument("--out", required=True, type=Path, help="store folder")
    p.add_argument("--kind", choices=("coco", "domainnet"), default=None, help="dataset format (default: guessed)")
    p.add_argument("--domains", nargs="+", default=None, help="DomainNet domains to use (default: all)")
    p.add_argument("--split", default=None, help="COCO split, e.g. val2017")
    p.add_argument("--n-samples", type=int, default=None, help="K, samples from the start of the listing (default: all)")
    p.add_argument("--n-masks", type=int, default=10_000, help="M, masks per sample (paper: 10,000)")
    p.add_argument("--seed", type=int, default=0, help="study seed; masks use a per-sample seed derived from it")
    p.add_argument("--ablation-ratio", type=float, default=0.75, help="p, share of heads ablated per mask")
    p.add_argument("--means", type=Path, default=None, help="mean keys/values file (default: computed under the store)")
    p.add_argument("--n-mean-images", type=int, default=100, help="R, reference images for the means (default 100)")
    p.add_argument("--batch-size", type=int, default=64, help="masks per forward (halved on out-of-memory)")
    p.add_argument("--prompt", default=None, help="prompt (default: the paper's)")
    p.add_argument("--method", choices=("fast", "literal"), default="fast")
    p.add_argument("--include-wrong", action="store_true",
                   help="also attribute samples the model answers wrongly (default: skip them, as the paper)")
    p.add_argument("--adaptive", action="store_true", help="stop drawing masks once held-out R² is stable")
    p.add_argument("--adaptive-chunk", type=int, default=500, help="masks per chunk with --adaptive (default 500)")
    p.add_argument("--adaptive-tol", type=float, default=0.01, help="R² change counted as stable (default 0.01)")
    p.add_argument("--adaptive-patience", type=int, default=2, help="stable chunks needed to stop (default 2)")
    p.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                   help="do not retry samples that failed in an earlier run")
    p.add_argument("--device", default=None, help="device (default: the one accelerate gives this process)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    cfg = CollectConfig(model=args.model, data=args.data, out=args.out, kind=args.kind, domains=args.domains,
                        split=args.split, n_samples=args.n_samples, n_masks=args.n_masks, seed=args.seed,
                        ratio=args.ablation_ratio, means=args.means, n_mean_images=args.n_mean_images,
                        batch_size=args.batch_size, prompt=args.prompt, method=args.method,
                        include_wrong=args.include_wrong, adaptive=args.adaptive,
                        adaptive_chunk=args.adaptive_chunk, adaptive_tol=args.adaptive_tol,
                        adaptive_patience=args.adaptive_patience, retry_failed=args.retry_failed,
                        device=args.device, progress=args.progress, delay=args.delay)
    try:
        collect(cfg)
    finally:
        _close_distributed()
    return 0


def _close_distributed() -> None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:   # noqa: BLE001 - shutting down
        pass
