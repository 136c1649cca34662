"""The explorer's data: panel contents read from the store through a :class:`~hearlib.paper.study.Study`,
the live ablation, and the head-set export (no drawing, no widgets)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hearlib.errors import UserError
from hearlib.method.effects import ranking
from hearlib.paper.analysis import head_name
from hearlib.records.pipeline import NotCollected
from hearlib.records.stages import Settings, StageFailed

EXPORT_VERSION = 1


@dataclass
class HeadPanel:
    """What the explorer shows for one head of one sample (None where the record is not collected)."""

    n: int
    name: str
    theta: float
    rank: int                          # 1 = largest θ
    image_attention: float             # Eq. 10 weight (sum over image tokens)
    attention: np.ndarray | None       # Eq. 10 per image token [P_img] (head_attention record)
    layout: object | None              # hearlib.families.geometry.TokenLayout of the sample
    lens: list | None                  # [(token, logit)] top tokens of the head's output
    delta: float | None                # single-head Δ = 1 − π(x_¬n)
    in_x_star: bool | None             # in this sample's x*
    x_star_share: float | None         # share of the stored samples whose x* holds the head
    missing: list                      # what could not be read, with why


class Explorer:
    """Store-backed panel data for one model's samples (see the module docstring).

    ``settings``: the study's n_masks, ratio, seed, threshold (the keys of the records to read)."""

    def __init__(self, study, *, n_samples: int | None, correct_only: bool = True, n_masks: int = 10_000,
                 ratio: float = 0.75, seed: int = 0, threshold: float = 0.8, lens_k: int = 10):
        self.study = study
        self.settings = dict(n_masks=int(n_masks), ratio=float(ratio), seed=int(seed))
        self.threshold = float(threshold)
        self.lens_k = int(lens_k)
        self._items = study.samples(n_samples, correct_only=correct_only)
        if not self._items:
            raise UserError(f"no samples of {study.model_id} on {study.dataset_id} to explore")
        self._cache: dict[tuple, object] = {}
        self._x_star_share: np.ndarray | None = None
        self.live_calls = 0

    # -- samples and records ---------------------------------------------------------------
    @property
    def items(self) -> list:
        return list(self._items)

    def item(self, sample) -> object:
        """The item with image id ``sample`` (or the item itself)."""
        if not isinstance(sample, (str, int)):
            return sample
        for it in self._items:
            if str(it.image_id) == str(sample):
                return it
        raise UserError(f"sample {sample} is not among the explorer's {len(self._items)} samples")

    def _record(self, stage: str, item, **settings):
        key = (stage, str(item.image_id))
        if key not in self._cache:
            try:
                self._cache[key] = getattr(self.study, stage)(item, **settings) if hasattr(self.study, stage) \
                    else self.study.pipeline.ensure(stage, item, Settings.make(**settings))
            except (NotCollected, StageFailed) as error:
                self._cache[key] = error
        value = self._cache[key]
        return None if isinstance(value, Exception) else value

    def _why(self, stage: str, item) -> str | None:
        value = self._cache.get((stage, str(item.image_id)))
        return f"{stage}: {value}" if isinstance(value, Exception) else None

    def screen(self, item):
        return self._record("screen", self.item(item))

    def attribution(self, item):
        return self._record("attribution", self.item(item), **self.settings)

    def validation(self, item):
        return self._record("validation", self.item(item), **self.settings, threshold=self.threshold)

    def head_attention(self, item):
        return self._record("head_attention", self.item(item))

    def lens(self, item):
        return self._record("lens", self.item(item), lens_k=max(self.lens_k, Settings().lens_k))

    # -- panels ------------------------------------------------------------------------------
    def shape(self, item) -> tuple[int, int]:
        """(L, H) of the model, from the sample's attribution record."""
        attr = self._need(self.attribution(item), "attribution", item)
        return int(attr["n_layers"]), int(attr["n_heads"])

    def _need(self, record, stage, item):
        if record is None:
            raise UserError(self._why(stage, self.item(item)) or f"no {stage} record for sample {item}")
        return record

    def sample_info(self, item) -> dict:
        """The sample's label, the model's answer and the attribution's fit."""
        item = self.item(item)
        screen, attr = self.screen(item), self.attribution(item)
        out = {"sample": str(item.image_id), "label": item.label, "path": str(item.path),
               "predicted": screen["predicted"] if screen is not None else None,
               "correct": screen["correct"] if screen is not None else None}
        if attr is not None:
            out.update(r2=float(attr["r2"]), pearson=float(attr["pearson"]), intercept=float(attr["intercept"]),
                       n_masks=int(attr["n_masks"]))
        valid = self.validation(item)
        if valid is not None:
            out["k_star"] = int(valid["k_star"])
        return out

    def theta_map(self, item) -> np.ndarray:
        """θ as an [L, H] map."""
        attr = self._need(self.attribution(item), "attribution", item)
        L, H = int(attr["n_layers"]), int(attr["n_heads"])
        return np.asarray(attr["theta"], dtype=np.float64).reshape(L, H)

    def heads_by_theta(self, item) -> list[tuple[int, str, float]]:
        """Every head as (n, name, θ_n), largest θ first (the HeAr order)."""
        theta = self.theta_map(item).ravel()
        H = self.shape(item)[1]
        return [(int(n), head_name(n, H), float(theta[n])) for n in ranking(theta)]

    def x_star_share(self) -> np.ndarray | None:
        """Share of the explorer's samples whose x* holds each head (validation records present)."""
        if self._x_star_share is None:
            stars = [v["x_star"] for v in (self.validation(it) for it in self._items) if v is not None]
            self._x_star_share = np.mean(np.stack(stars), axis=0) if stars else None
        return self._x_star_share

    def head_document(self) -> dict:
        """The model's head set over the store's samples, as ``hearlib heads`` writes it (mean θ,
        bootstrap intervals, x*, stability; :func:`hearlib.records.heads.head_data`), from the
        attribution records of the explorer's settings; read once."""
        if "head_document" not in self._cache:
            from hearlib.records.heads import head_data

            pipeline = self.study.pipeline
            digest = pipeline.settings_digest("attribution", Settings.make(**self.settings))
            self._cache["head_document"] = head_data(pipeline.store.root, self.study.model_id,
                                                     settings=digest).document
        return self._cache["head_document"]

    def head(self, item, n: int) -> HeadPanel:
        """The head panel of head ``n`` (n = l·H + h) for ``item``."""
        item = self.item(item)
        attr = self._need(self.attribution(item), "attribution", item)
        L, H = int(attr["n_layers"]), int(attr["n_heads"])
        n = int(n)
        if not 0 <= n < L * H:
            raise UserError(f"head {n} is outside 0..{L * H - 1}")
        theta = np.asarray(attr["theta"], dtype=np.float64)
        rank = int(np.flatnonzero(ranking(theta) == n)[0]) + 1
        missing = []
        att = self.head_attention(item)
        attention = layout = None
        if att is not None:
            from hearlib.families.geometry import TokenLayout

            attention = np.asarray(att["attention"][n], dtype=np.float64)
            layout = TokenLayout.from_dict(att["layout"])
        else:
            missing.append(self._why("head_attention", item))
        lens = self.lens(item)
        tokens = None
        if lens is not None:
            tokens = [(str(t), float(v)) for t, v in zip(lens["lens_tokens"][n][:self.lens_k],
                                                        lens["lens_logits"][n][:self.lens_k])]
        else:
            missing.append(self._why("lens", item))
        valid = self.validation(item)
        delta = in_star = None
        if valid is not None:
            delta, in_star = float(valid["delta"][n]), bool(valid["x_star"][n])
        else:
            missing.append(self._why("validation", item))
        share = self.x_star_share()
        return HeadPanel(n, head_name(n, H), float(theta[n]), rank, float(attr["image_attention"].ravel()[n]),
                         attention, layout, tokens, delta, in_star, None if share is None else float(share[n]),
                         [m for m in missing if m])

    # -- head sets ----------------------------------------------------------------------------
    def top_k(self, item, k: int) -> np.ndarray:
        """bool [N]: the k heads of largest θ intact (the HeAr order of the validation curves)."""
        theta = self.theta_map(item).ravel()
        mask = np.zeros(theta.size, dtype=bool)
        mask[ranking(theta)[:max(0, min(int(k), theta.size))]] = True
        return mask

    def linear_prediction(self, item, heads) -> float:
        """θ·x + b, the attribution's prediction of π for head mask ``heads``."""
        attr = self._need(self.attribution(item), "attribution", item)
        heads = np.asarray(heads, dtype=np.float64).ravel()
        return float(heads @ np.asarray(attr["theta"], dtype=np.float64) + float(attr["intercept"]))

    def curves(self, item) -> dict | None:
        """Stored faithfulness and completeness (k = 1..N) per criterion, or None if not collected."""
        valid = self.validation(self.item(item))
        if valid is None:
            return None
        return {name: (np.asarray(valid["faithfulness"][i]), np.asarray(valid["completeness"][i]))
                for i, name in enumerate(valid["criteria"])}

    def stored_pi(self, item, k: int) -> float | None:
        """π with only the top-k heads by θ intact, from the stored HeAr faithfulness curve (k ≥ 1)."""
        curves = self.curves(item)
        if curves is None or "HeAr" not in curves or int(k) < 1:
            return None
        return float(curves["HeAr"][0][int(k) - 1])

    # -- live ablation ---------------------------------------------------------------------------
    @property
    def model_loaded(self) -> bool:
        return self.study.pipeline.engine_loaded

    def load_model(self, device: str | None = None):
        """Load the model (and the pipeline's means when first used) for :meth:`live_pi`."""
        pipeline = self.study.pipeline
        if not pipeline.engine_loaded:
            from hearlib.method.loading import load_engine

            pipeline.engine = load_engine(pipeline.model, device=device or pipeline.device)
        return pipeline.engine

    def live_pi(self, item, heads) -> float:
        """π for head mask ``heads`` (bool [N], True = intact), ablated now: ``engine.normalized``
        on the sample with the pipeline's mean keys/values and method."""
        if not self.model_loaded:
            raise UserError("load the model first (Explorer.load_model)")
        item = self.item(item)
        heads = np.asarray(heads, dtype=bool).reshape(1, -1)
        prompt = Settings().prompt
        pipeline = self.study.pipeline
        means = pipeline.means(prompt)
        ctx = pipeline.context(item, prompt)
        self.live_calls += 1
        return float(pipeline.engine.normalized(ctx.sample, means, heads, method=pipeline.method,
                                                batch_size=pipeline.batch_size)[0])

    # -- export ------------------------------------------------------------------------------------
    def head_set(self, item, heads, **extra) -> dict:
        """A JSON-ready description of a head set for ``item``."""
        item = self.item(item)
        heads = np.asarray(heads, dtype=bool).ravel()
        L, H = self.shape(item)
        idx = [int(n) for n in np.flatnonzero(heads)]
        return {"version": EXPORT_VERSION, "model": self.study.model, "model_id": self.study.model_id,
                "dataset": self.study.dataset_id, "sample": str(item.image_id), "label": item.label,
                "n_layers": L, "n_heads": H, "heads": idx, "names": [head_name(n, H) for n in idx],
                "linear_prediction": self.linear_prediction(item, heads), **extra}


def export_head_set(path: str | Path, head_set: dict) -> Path:
    """Write ``head_set`` as JSON, atomically (hearlib.io); returns the path."""
    from hearlib.io import save_json

    return save_json(Path(path), head_set)


def load_head_set(path: str | Path) -> dict:
    """Read a head set written by :func:`export_head_set`, checking its fields."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("version") != EXPORT_VERSION or not isinstance(data.get("heads"), list):
        raise UserError(f"{path} is not a head set of the explorer (version {EXPORT_VERSION})")
    return data


def parse_head(text: str, n_heads: int) -> int:
    """``"L3H7"`` (or an index) -> n = l·H + h."""
    text = str(text).strip().upper()
    if text.isdigit():
        return int(text)
    if text.startswith("L") and "H" in text:
        layer, head = text[1:].split("H", 1)
        return int(layer) * int(n_heads) + int(head)
    raise UserError(f"not a head: {text!r} (write L<layer>H<head> or an index)")
