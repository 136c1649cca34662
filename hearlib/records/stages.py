"""The per-sample stages of the study, registered once.

Each stage is a function of one sample's context (engine, means, the prepared sample, its
unablated forward, the records of the stages it needs) and the :class:`Settings`; it returns
arrays and JSON metadata, which :mod:`hearlib.records.pipeline` stores as one record. A stage is
registered with its name, version, the stages it needs and the settings it reads; a record's key
holds all of these (transitively), the mask sampler's and the fit's versions, the ablation
method and the means' identity, so a changed stage, sampler or fit never reuses old records.

``screen``       the unablated forward: predicted token, correct or not, text tokens
``attribution``  M head masks (p ablated) from a per-sample seed, π, the ElasticNet θ with
                 held-out R²/Pearson, the R²(M) curve, Eq. 10's image attention per head
``validation``   single-head Δ, faithfulness/completeness curves per criterion, x*
``text``         Δ_i for each text token under x*, u*, π(x*, u*)/π(x*)
``image``        image-token masks under (x*, u*), θ^img, R²/Pearson, Eq. 13's w
``lens``         the logit lens of every head's output at the last position (top-k tokens)
``head_attention`` each head's Eq. 10 attention per image token and the token layout (the explorer)
``knockout``, ``readout``, ``patching``  where the read happens (notebook 11, :mod:`hearlib.method.readsite`)
``generation``   greedy generation under head-set interventions (notebook 12): sets found on *other*
                 samples' θ (:mod:`hearlib.records.generation_stage`)

Table 1 (prompts) is the attribution stage under other prompts; Fig. 9 (domains) is the
attribution and validation stages on a DomainNet-layout dataset. Both are requests of
:mod:`hearlib.paper.plan`, not stages of their own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from hearlib.method.effects import (CRITERIA, criterion_orders, image_tokens, min_heads, single_head_delta, text_tokens,
                              top_k_mask, validation_curves, weighted_image_attention)
from hearlib.families.geometry import image_token_layout
from hearlib.method.attribution import FIT_VERSION, fit_attribution, r2_by_mask_count, stable_mask_count
from hearlib.method.masks import SAMPLER_VERSION, sample_head_masks, sample_rng
from hearlib.prompts import PAPER_PROMPT

__all__ = ["Settings", "Stage", "STAGES", "stage_key_settings", "needed", "StageFailed", "CURVE_COUNTS",
           "curve_counts", "head_masks"]

CURVE_COUNTS = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)


class StageFailed(Exception):
    """The stage cannot produce a record for this sample (the reason is stored in the manifest)."""


@dataclass(frozen=True)
class Settings:
    """Every setting a stage can read; each stage's key holds only those it (transitively) reads."""

    prompt: str = PAPER_PROMPT
    answer: str = "label"        # the sample field holding the answer word (hearlib.records.questions)
    n_masks: int = 10_000
    ratio: float = 0.75
    seed: int = 0
    adaptive: bool = False
    adaptive_chunk: int = 500
    adaptive_tol: float = 0.01
    adaptive_patience: int = 2
    threshold: float = 0.8
    criteria: tuple[str, ...] = CRITERIA
    token_threshold: float = 0.05
    n_image_masks: int = 10_000
    image_ratio: float = 0.75
    lens_k: int = 10
    head_set_samples: int = 40           # generation: the first samples (answered correctly), θ from them
    head_set_correct_only: bool = True
    head_set_sizes: tuple[int, ...] = (1, 2, 4, 8)
    random_sets: int = 3
    scales: tuple[float, ...] = (0.0, 0.5, 2.0, 4.0)
    max_new_tokens: int = 3

    @classmethod
    def make(cls, **values) -> "Settings":
        """Settings from keyword values, ``None`` meaning the default, types normalised."""
        clean = {k: v for k, v in values.items() if v is not None}
        unknown = set(clean) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        out = cls(**clean)
        return replace(out, answer=str(out.answer), n_masks=int(out.n_masks), ratio=float(out.ratio), seed=int(out.seed),
                       threshold=float(out.threshold), criteria=tuple(out.criteria),
                       token_threshold=float(out.token_threshold), n_image_masks=int(out.n_image_masks),
                       image_ratio=float(out.image_ratio), lens_k=int(out.lens_k),
                       head_set_samples=int(out.head_set_samples),
                       head_set_correct_only=bool(out.head_set_correct_only),
                       head_set_sizes=tuple(int(k) for k in out.head_set_sizes), random_sets=int(out.random_sets),
                       scales=tuple(float(x) for x in out.scales), max_new_tokens=int(out.max_new_tokens))

    def with_(self, **values) -> "Settings":
        return Settings.make(**{**asdict(self), **values})


@dataclass(frozen=True)
class Stage:
    name: str
    version: int
    needs: tuple[str, ...]
    reads: tuple[str, ...]               # the Settings fields this stage itself reads
    compute: Callable[["Any", Settings], tuple[dict, dict]]
    uses_means: bool = True
    doc: str = ""
    others: tuple[str, ...] = ()         # stages whose records of *other* samples it reads (in its key)


STAGES: dict[str, Stage] = {}


def _stage(name: str, version: int, needs: Sequence[str] = (), reads: Sequence[str] = (), uses_means: bool = True,
           others: Sequence[str] = ()):
    def register(function):
        STAGES[name] = Stage(name, version, tuple(needs), tuple(reads), function, uses_means,
                             (function.__doc__ or "").strip().splitlines()[0], tuple(others))
        return function
    return register


def needed(stage: str) -> list[str]:
    """``stage`` and every stage it needs, dependencies first (with the stages whose records of
    other samples it reads: they enter its key, though this sample's are not computed)."""
    order: list[str] = []

    def visit(name):
        for dep in (*STAGES[name].needs, *STAGES[name].others):
            visit(dep)
        if name not in order:
            order.append(name)
    visit(stage)
    return order


def stage_key_settings(stage: str, settings: Settings, method: str, means_spec: dict | None) -> dict:
    """What enters ``stage``'s record key: its version and those of the stages it needs, the
    settings they read, the sampler and fit versions, and (where means are used) the method and
    the means' identity."""
    chain = needed(stage)
    reads = sorted({field_ for name in chain for field_ in STAGES[name].reads})
    values = asdict(settings)
    if "n_masks" in reads and not settings.adaptive:
        reads = [r for r in reads if not r.startswith("adaptive_")]
    if settings.answer == "label":      # the paper's answer: keys as before the field existed
        reads = [r for r in reads if r != "answer"]
    out: dict[str, Any] = {"stage": stage, "versions": {name: STAGES[name].version for name in chain},
                           "sampler": SAMPLER_VERSION, "fit": FIT_VERSION,
                           **{name: (list(values[name]) if isinstance(values[name], tuple) else values[name])
                              for name in reads}}
    if any(STAGES[name].uses_means for name in chain):
        out.update(method=method, means=means_spec)
    return out


# ----------------------------------------------------------------------------- helpers

def curve_counts(n_masks: int) -> list[int]:
    """Mask counts at which the R²(M) curve is reported: a 1-2-5 ladder below M, then M."""
    return [c for c in CURVE_COUNTS if c < n_masks] + [int(n_masks)]


def head_masks(n_heads: int, sample_id, settings: Settings, n: int | None = None) -> np.ndarray:
    """The head masks of a sample: ``n`` (default M) rows from the per-sample stream ``"heads"``.

    ``hearlib attribute`` and ``hearlib run`` both draw with this, so the same seed and sample
    give the same masks; a prefix of the rows is what a smaller M would have drawn."""
    rng = sample_rng(settings.seed, str(sample_id), "heads")
    return sample_head_masks(n_heads, settings.n_masks if n is None else n, settings.ratio, rng)


# ----------------------------------------------------------------------------- the stages

@_stage("screen", 1, reads=("prompt", "answer"), uses_means=False)
def screen(ctx, settings: Settings) -> tuple[dict, dict]:
    """The unablated forward: does the model answer the label (or the question's answer field)?"""
    engine = ctx.engine
    problem = ctx.answer_problem
    if problem is not None:
        return {}, {"usable": False, "correct": False, "reason": problem, "predicted": None,
                    "prompt": settings.prompt}
    sample, record = ctx.sample, ctx.record
    predicted = engine.tokenizer.convert_ids_to_tokens([record.predicted_id])[0]
    correct = bool(record.correct)
    reason = "" if correct else f"the model answers {predicted!r}, not {sample.answer_tokens[0]!r}"
    return {}, {"usable": True, "correct": correct, "reason": reason, "predicted": predicted,
                "logit": float(record.logit), "answer_tokens": list(sample.answer_tokens),
                "text_tokens": list(engine.tokenizer.convert_ids_to_tokens(sample.text_ids)),
                "n_text": sample.n_text, "n_image": sample.n_image, "n_layers": engine.n_layers,
                "n_heads": engine.n_heads, "prompt": sample.prompt}


@_stage("attribution", 1, needs=("screen",), reads=("prompt", "n_masks", "ratio", "seed", "adaptive",
                                                    "adaptive_chunk", "adaptive_tol", "adaptive_patience"))
def attribution(ctx, settings: Settings) -> tuple[dict, dict]:
    """HeAr: M head masks, π under each, the ElasticNet θ with held-out R² and Pearson."""
    engine, sample, record = ctx.engine, ctx.sample, ctx.record
    intact, ablated = ctx.reference_logits
    if not np.isfinite(intact - ablated) or intact == ablated:
        raise StageFailed("ablating every head leaves the answer logit unchanged (ℓ(1) = ℓ(0)); π is undefined")
    n_heads = engine.n_total_heads
    adaptive_stop = None
    if settings.adaptive:
        rng = sample_rng(settings.seed, str(ctx.item.image_id), "heads")
        chunks_m, chunks_l, counts, curve = [], [], [], []
        drawn = 0
        while drawn < settings.n_masks:
            size = min(settings.adaptive_chunk, settings.n_masks - drawn)
            chunk = sample_head_masks(n_heads, size, settings.ratio, rng)
            chunks_m.append(chunk)
            chunks_l.append(ctx.logits(chunk))
            drawn += size
            pi_so_far = (np.concatenate(chunks_l) - ablated) / (intact - ablated)
            counts.append(drawn)
            curve.append(fit_attribution(np.concatenate(chunks_m), pi_so_far, seed=settings.seed).r2)
            adaptive_stop = stable_mask_count(curve, tol=settings.adaptive_tol, counts=counts,
                                              patience=settings.adaptive_patience)
            if adaptive_stop is not None:
                break
        masks, logits = np.concatenate(chunks_m), np.concatenate(chunks_l)
        r2_counts, r2_curve = np.asarray(counts, dtype=np.int64), np.asarray(curve, dtype=np.float64)
    else:
        masks = head_masks(n_heads, ctx.item.image_id, settings)
        logits = ctx.logits(masks)
    pi = (logits - ablated) / (intact - ablated)
    fit = fit_attribution(masks, pi, seed=settings.seed)
    if not settings.adaptive:
        r2_counts = np.asarray(curve_counts(masks.shape[0]), dtype=np.int64)
        r2_curve = np.empty(r2_counts.size)
        r2_curve[:-1] = r2_by_mask_count(masks, pi, r2_counts[:-1].tolist(), seed=settings.seed)
        r2_curve[-1] = fit.r2
    multi = len(sample.answer_tokens) > 1
    arrays = {"masks": masks.astype(bool), "logits": logits.astype(np.float64), "pi": pi.astype(np.float64),
              "theta": np.asarray(fit.coef, dtype=np.float64),
              "image_attention": np.asarray(record.image_attention, dtype=np.float64),
              "r2_counts": r2_counts, "r2_curve": r2_curve}
    meta = {"r2": float(fit.r2), "pearson": float(fit.pearson), "intercept": float(fit.intercept),
            "converged": bool(fit.converged), "n_train": fit.n_train, "n_test": fit.n_test,
            "n_layers": engine.n_layers, "n_heads": engine.n_heads, "n_text": sample.n_text,
            "n_image": sample.n_image, "n_masks": int(masks.shape[0]), "adaptive_stop": adaptive_stop,
            "logit_intact": float(intact), "logit_ablated": float(ablated), "logit_unablated": float(record.logit),
            "answer_tokens": list(sample.answer_tokens), "answer_id": int(sample.answer_id),
            "answer_note": (f"the answer {ctx.answer!r} is {len(sample.answer_tokens)} tokens "
                            f"{sample.answer_tokens}; the first is scored") if multi else ""}
    return arrays, meta


@_stage("validation", 1, needs=("attribution",), reads=("threshold", "criteria"))
def validation(ctx, settings: Settings) -> tuple[dict, dict]:
    """Single-head Δ, faithfulness/completeness per criterion, x* (HeAr, faithfulness > threshold)."""
    criteria = tuple(settings.criteria)
    if "HeAr" not in criteria:
        raise ValueError("validation needs the HeAr criterion (x* comes from it)")
    attr = ctx.need("attribution")
    theta, evaluate, n = attr["theta"], ctx.evaluate, attr["theta"].size
    delta = single_head_delta(evaluate, n)   # always: Fig. 7 reads it
    orders = criterion_orders(theta=theta, attention=attr["image_attention"], delta=delta,
                              rng=sample_rng(settings.seed, ctx.item.image_id, "random-order"), n_heads=n)
    faith, comp = np.empty((len(criteria), n)), np.empty((len(criteria), n))
    order_rows = np.empty((len(criteria), n), dtype=np.int64)
    for row, name in enumerate(criteria):
        curves = validation_curves(evaluate, orders[name])
        faith[row], comp[row], order_rows[row] = curves.faithfulness, curves.completeness, curves.order
    k = min_heads(faith[criteria.index("HeAr")], settings.threshold, "faithfulness")
    arrays = {"delta": delta, "faithfulness": faith, "completeness": comp, "orders": order_rows,
              "x_star": top_k_mask(theta, min(k, n))}
    return arrays, {"criteria": list(criteria), "k_star": int(min(k, n)), "k_star_raw": int(k)}


@_stage("text", 1, needs=("validation",), reads=("token_threshold",))
def text(ctx, settings: Settings) -> tuple[dict, dict]:
    """Text tokens under x*: Δ_i, u* (Δ_i > token_threshold), π(x*, u*)/π(x*)."""
    valid, screen_ = ctx.need("validation"), ctx.need("screen")
    res = text_tokens(ctx.evaluate, valid["x_star"], int(screen_["n_text"]), settings.token_threshold)
    return ({"delta_text": res.delta, "u_star": res.u_star},
            {"pi_star": res.pi_star, "pi_u_star": res.pi_u_star, "ratio": res.ratio,
             "text_tokens": screen_["text_tokens"]})


@_stage("image", 2, needs=("text",), reads=("n_image_masks", "image_ratio"))
def image(ctx, settings: Settings) -> tuple[dict, dict]:
    """Image tokens under (x*, u*): θ^img from the ElasticNet over v, and Eq. 13's weighted attention w."""
    attr, valid, text_ = ctx.need("attribution"), ctx.need("validation"), ctx.need("text")
    record = ctx.record
    n_image = record.text_to_image.shape[-1]
    res = image_tokens(ctx.evaluate, valid["x_star"], text_["u_star"], n_image, settings.n_image_masks,
                       sample_rng(settings.seed, ctx.item.image_id, "image"), ratio=settings.image_ratio,
                       seed=settings.seed)
    w = weighted_image_attention(valid["x_star"], attr["theta"], text_["u_star"], text_["delta_text"],
                                 record.text_to_image)
    layout = image_token_layout(ctx.engine, ctx.sample)
    return ({"theta_img": res.theta, "w": w, "masks": res.masks, "pi": res.pi},
            {"r2": res.fit.r2, "pearson": res.fit.pearson, "layout": layout.to_dict(),
             "grid": [list(panel.shape) for panel in layout.panels]})


@_stage("lens", 1, needs=("screen",), reads=("prompt", "lens_k"), uses_means=False)
def lens(ctx, settings: Settings) -> tuple[dict, dict]:
    """The logit lens of every head's output at the last position: top-k tokens and logits (Fig. 8)."""
    engine, record = ctx.engine, ctx.record
    ids, values = engine.logit_lens_all(record, settings.lens_k)
    tokens = [engine.tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
    return {"lens_ids": ids, "lens_logits": values}, {"lens_tokens": tokens, "n_heads": engine.n_heads}


@_stage("head_attention", 1, needs=("screen",), reads=("prompt",), uses_means=False)
def head_attention(ctx, settings: Settings) -> tuple[dict, dict]:
    """Each head's Eq. 10 attention per image token (mean over text queries) and the token layout (explorer)."""
    record = ctx.record
    per_token = np.asarray(record.text_to_image, dtype=np.float32).mean(axis=2)      # [L, H, P_img]
    layout = image_token_layout(ctx.engine, ctx.sample)
    return ({"attention": per_token.reshape(-1, per_token.shape[-1])},
            {"layout": layout.to_dict(), "n_layers": ctx.engine.n_layers, "n_heads": ctx.engine.n_heads})


# ----------------------------------------------------------------------------- where the read happens (11)

@_stage("knockout", 1, needs=("screen",), reads=("prompt", "answer"))
def knockout(ctx, settings: Settings) -> tuple[dict, dict]:
    """π with every head of a window of layers [l, l + w) ablated, per start l, for w = 1 and 2."""
    from hearlib.method.readsite import window_knockout

    engine, sample = ctx.engine, ctx.sample
    intact, ablated = ctx.reference_logits
    if not np.isfinite(intact - ablated) or intact == ablated:
        raise StageFailed("ablating every head leaves the answer logit unchanged (ℓ(1) = ℓ(0)); π is undefined")
    widths = [w for w in (1, 2) if w <= engine.n_layers]
    arrays = {f"pi_w{w}": window_knockout(engine, sample, ctx.means, w, method=ctx.pipeline.method)
              for w in widths}
    return arrays, {"widths": widths, "n_layers": engine.n_layers, "n_heads": engine.n_heads}


@_stage("readout", 1, needs=("screen",), reads=("prompt", "answer"), uses_means=False)
def readout(ctx, settings: Settings) -> tuple[dict, dict]:
    """The final position's attention over the image per layer and head, and the residual stream
    (final position; mean of the image positions) after the embedding and after each layer."""
    from hearlib.method.readsite import residuals

    record = ctx.record
    final, image_mean = residuals(ctx.engine, ctx.sample)
    return ({"final_attention": np.asarray(record.text_to_image[:, :, -1, :], dtype=np.float32),
             "residual_final": final, "residual_image": image_mean},
            {"n_layers": ctx.engine.n_layers, "n_heads": ctx.engine.n_heads, "d_model": int(final.shape[1])})


@_stage("patching", 1, needs=("screen",), reads=("prompt", "answer"), uses_means=False)
def patching(ctx, settings: Settings) -> tuple[dict, dict]:
    """Every head's output at the final position of one layer, copied from a partner image with
    another answer (the next item in the study's order that the model answers correctly, else the
    next with another answer) into this sample's forward: how far the answer moves to the partner's."""
    from hearlib.method.readsite import patch_final_heads

    items = ctx.pipeline.items()
    start = next(i for i, it in enumerate(items) if str(it.image_id) == str(ctx.item.image_id))
    fallback = partner = None
    for offset in range(1, min(len(items), 41)):
        candidate = ctx.pipeline.sample_context(items[(start + offset) % len(items)], ctx.prompt, ctx.answer_field)
        if candidate.answer is None or candidate.answer_problem is not None:
            continue
        if candidate.sample.answer_id == ctx.sample.answer_id:
            continue
        if candidate.record.correct:
            partner = candidate
            break
        fallback = fallback or candidate
    partner = partner or fallback
    if partner is None:                  # recorded, not failed: a notebook reading the store skips it
        n_layers = ctx.engine.n_layers
        return ({"effect": np.full(n_layers, np.nan), "flipped": np.zeros(n_layers, dtype=bool)},
                {"partner": None, "partner_answer": None, "partner_correct": False,
                 "correct": bool(ctx.record.correct), "reason": "no item with another answer among the next 40"})
    result = patch_final_heads(ctx.engine, partner.sample, ctx.sample)
    return ({"effect": result["effect"].astype(np.float64), "flipped": result["flipped"].astype(bool)},
            {"partner": str(partner.item.image_id), "partner_answer": partner.answer,
             "partner_correct": bool(partner.record.correct), "correct": bool(ctx.record.correct),
             "d_source": result["d_source"], "d_target": result["d_target"]})


# ----------------------------------------------------------------------------- using the heads (12)

@_stage("generation", 1, needs=("screen",), others=("attribution",),
        reads=("prompt", "head_set_samples", "head_set_correct_only", "head_set_sizes", "random_sets", "scales",
               "max_new_tokens"))
def generation(ctx, settings: Settings) -> tuple[dict, dict]:
    """Greedy generation with no intervention, then under each head set of
    :func:`hearlib.records.generation_stage.head_sets` (found on the first ``head_set_samples`` samples'
    θ): the tokens, whether the first is the answer's, the decoded text."""
    from hearlib.records.generation_stage import generate_under, head_sets

    sets = head_sets(ctx.pipeline, settings)
    if str(ctx.item.image_id) in sets["found_on"]:
        raise StageFailed("the head sets were found on this sample; measure them on others (Selection.skip)")
    tokens, correct, texts = generate_under(ctx.engine, ctx.sample, ctx.means, sets["sets"], settings.max_new_tokens)
    return ({"tokens": tokens, "correct": correct},
            {"sets": sets["sets"], "texts": texts, "found_on": sets["found_on"], "n_layers": ctx.engine.n_layers,
             "n_heads": ctx.engine.n_heads})
