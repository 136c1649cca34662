"""A model's image-to-text heads, from a store, as JSON and CSV (``hearlib heads``, :mod:`hearlib.cli.heads`).

Reads the attribution (θ) and validation (x*) records that ``hearlib run`` stored for one model
and writes, per (layer, head), the mean θ and its spread over the samples, how often the head is
in x*, Fig. 10's sample-agnostic / sample-specific split (:func:`hearlib.method.effects.sample_agnostic_heads`)
and the top-k heads of each layer, with the record settings and the sample counts. The format is
described in docs/HEADS_FORMAT.md, for tools that read head sets (KV-cache compression, pruning),
also as SparseMM's per-head score file and as a per-layer layout (:func:`export`). Every set says
how stable it is (:func:`stability`): bootstrap intervals of mean θ, the overlap of x* between
disjoint halves of the samples, datasets and styles, and how the set moves with the sample count.
No model is loaded and nothing is computed but statistics of the stored records; only the metadata
of the model's records and the arrays of the groups used are read.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hearlib.errors import UserError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "hearlib-heads"
VERSION = 1
CSV_COLUMNS = ("layer", "head", "index", "theta_mean", "theta_std", "theta_min", "theta_max", "theta_ci_low",
               "theta_ci_high", "x_star_count", "x_star_share", "above_threshold_share", "kind", "rank_in_layer")
FORMATS = ("hearlib", "sparsemm", "per-layer")
BOOTSTRAP = 1000            # resamples of the samples for the intervals of mean θ
LEVEL = 0.95
SPLITS = 20                 # random splits / subsets per point of the stability numbers
STABILITY_SEED = 0



def _model_matches(query: str, meta: dict) -> bool:
    model, model_id = str(meta.get("model", "")), str(meta.get("model_id", ""))
    names = {model, model_id, Path(model).name} - {""}
    return query in names or query.rstrip("/") in names or Path(query).name in names


def _meta(store, key: str) -> dict | None:
    """A record's metadata alone (its meta.json), without its arrays."""
    from hearlib.records.store import META

    try:
        meta = json.loads((store.path(key) / META).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    meta.pop("_arrays", None)
    return meta


def _groups(store, model: str) -> tuple[str, dict[tuple, list]]:
    """(the model's id, {(dataset, stage dir): [records, metadata only]}) of the attribution and
    validation records. A store folder holds one model: the first record's metadata decides whether
    a folder is the model's, and only the metadata of that folder's records is read."""
    from hearlib.records.store import Record, slug

    by_folder: dict[str, list[str]] = defaultdict(list)
    for key in store.keys():
        parts = key.split("/")
        if len(parts) == 4 and parts[2].startswith(("attribution-", "validation-")):
            by_folder[parts[0]].append(key)
    found: dict[str, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for folder, keys in by_folder.items():
        first = next((m for m in map(lambda k: _meta(store, k), keys) if m is not None), None)
        if first is None or not (_model_matches(model, first) or slug(model) == folder):
            continue
        for key in keys:
            meta = _meta(store, key)
            if meta is None:
                continue
            parts = key.split("/")
            group = (str(meta.get("dataset", parts[1])), parts[2])
            found[str(meta.get("model_id", parts[0]))][group].append(Record({}, meta, key, store.path(key)))
    if not found:
        raise UserError(f"no attribution or validation records for model {model!r} in {store.root}")
    if len(found) > 1:
        raise UserError(f"model {model!r} is ambiguous in {store.root}: {', '.join(sorted(found))}")
    model_id, groups = next(iter(found.items()))
    return model_id, groups


def _load(store, records: list) -> list:
    """The records with their arrays, in key order."""
    loaded = [store.get(r.key) for r in sorted(records, key=lambda r: r.key)]
    return [r for r in loaded if r is not None]


def _attribution_part(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in ("stage", "versions", "threshold", "criteria")}


@dataclass
class HeadData:
    """A heads document and the per-sample numbers it summarises (for the other formats)."""

    document: dict
    thetas: "np.ndarray"          # [S_attribution, N] θ per sample
    x_star: "np.ndarray"          # bool [S_validation, N]


def head_table(store_root: str | Path, model: str, **options) -> dict:
    """The heads document (docs/HEADS_FORMAT.md) of ``model`` from the store at ``store_root``
    (options as :func:`head_data`)."""
    return head_data(store_root, model, **options).document


def head_data(store_root: str | Path, model: str, *, dataset: str | None = None, prompt: str | None = None,
              settings: str | None = None, top_k: int = 5, threshold: float = 0.1, share: float = 0.5) -> HeadData:
    """:class:`HeadData` of ``model`` from the store at ``store_root``: the main study's records, or
    those ``dataset``, ``prompt`` and ``settings`` (an attribution settings hash) choose."""
    import numpy as np

    from hearlib.records.store import Store

    root = Path(store_root)
    if not root.is_dir():
        raise UserError(f"store not found: {root}")
    if int(top_k) < 1:
        raise UserError("--top-k must be at least 1")
    if not 0 < float(share) <= 1:
        raise UserError("--share must lie in (0, 1]")
    store = Store(root, clean=False)
    model_id, groups = _groups(store, model)
    (ds, folder), attr_records = chosen_attribution(groups, model_id, root, dataset, prompt, settings)
    val_records = _load(store, validation_records(groups, (ds, folder), attr_records))
    attr_records = _load(store, attr_records)
    others = {}                     # the same settings' x* on the store's other datasets
    for other in sorted({g[0] for g in groups} - {ds}):
        made = validation_records(groups, (other, folder), attr_records)
        if made:
            others[other] = np.stack([np.asarray(r.arrays["x_star"], dtype=bool) for r in _load(store, made)])
    n_layers, n_heads = int(attr_records[0].meta["n_layers"]), int(attr_records[0].meta["n_heads"])
    thetas = np.stack([np.asarray(r.arrays["theta"], dtype=np.float64) for r in attr_records])   # [S, N]
    if thetas.shape[1] != n_layers * n_heads:
        raise UserError(f"attribution records of {model_id!r} hold {thetas.shape[1]} heads, not {n_layers}·{n_heads}")
    x_star = (np.stack([np.asarray(r.arrays["x_star"], dtype=bool) for r in val_records]) if val_records
              else np.zeros((0, thetas.shape[1]), dtype=bool))
    document = heads_document(model_id, ds, attr_records, val_records, thetas, x_star, others,
                              top_k=top_k, threshold=threshold, share=share)
    return HeadData(document, thetas, x_star)


def validation_records(groups: dict, group: tuple, records: list) -> list:
    """The validation records made on top of these attribution records of ``group`` (the most samples,
    then the most criteria: the main study's, not a ratio sweep's HeAr-only ones), in key order."""
    base = _attribution_part(records[0].meta["settings"])
    found = [r for g, r in groups.items() if g[0] == group[0] and g[1].startswith("validation-")
             and _attribution_part(r[0].meta["settings"]) == base]
    found.sort(key=lambda r: (-len(r[0].meta["settings"].get("criteria", [])), -len(r), r[0].key))
    return sorted(found[0], key=lambda r: r.key) if found else []


def chosen_attribution(groups: dict, model_id: str, root: Path, dataset: str | None, prompt: str | None,
                       settings: str | None) -> tuple[tuple, list]:
    """((dataset, stage dir), records) of the attribution records ``dataset``, ``prompt`` and ``settings``
    leave, the one with the richest validation records on top; UserError when none, or several tie."""
    def keep(group, records) -> bool:
        ds, folder = group
        meta = records[0].meta
        return ((dataset is None or dataset == ds or dataset in ds or dataset == meta.get("data"))
                and (prompt is None or meta["settings"].get("prompt") == prompt))

    attribution = {g: r for g, r in groups.items() if g[1].startswith("attribution-") and keep(g, r)}
    if settings is not None:
        attribution = {g: r for g, r in attribution.items() if g[1] == f"attribution-{settings}"}
    if not attribution:
        raise UserError(f"no attribution records for model {model_id!r} in {root} with the given "
                        f"--dataset/--prompt/--settings; there: {', '.join(sorted('/'.join(g) for g in groups))}")

    def rank(item):
        val = validation_records(groups, *item)
        return (-(len(val[0].meta["settings"].get("criteria", [])) if val else 0), -len(item[1]), -len(val))

    ranked = sorted(((rank(item), item) for item in attribution.items()), key=lambda x: (x[0], x[1][0]))
    if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
        raise UserError(f"several attribution settings for model {model_id!r} serve equally well: "
                        f"{', '.join('/'.join(item[0]) for _, item in ranked)}; choose with --dataset, --prompt "
                        f"or --settings")
    return ranked[0][1]


def heads_document(model_id: str, ds: str, attr_records: list, val_records: list, thetas, x_star, others: dict, *,
                   top_k: int, threshold: float, share: float) -> dict:
    """The heads document (docs/HEADS_FORMAT.md) of the chosen records: per-head rows, Fig. 10's
    split, the top-k heads of each layer and the stability."""
    import numpy as np

    from hearlib.method.effects import sample_agnostic_heads

    meta = attr_records[0].meta
    n_layers, n_heads = int(meta["n_layers"]), int(meta["n_heads"])
    split_heads, used, agnostic = sample_agnostic_heads(thetas, threshold, share)
    kind = np.full(thetas.shape[1], "none", dtype=object)
    kind[split_heads] = np.where(agnostic, "sample-agnostic", "sample-specific")
    above = np.zeros(thetas.shape[1])
    above[split_heads] = used
    mean, std = thetas.mean(axis=0), thetas.std(axis=0)
    counts = x_star.sum(axis=0).astype(int)
    shares = counts / len(val_records) if val_records else np.full(thetas.shape[1], np.nan)
    by_layer = mean.reshape(n_layers, n_heads)
    rank = np.empty((n_layers, n_heads), dtype=int)
    for layer in range(n_layers):
        order = np.lexsort((np.arange(n_heads), -by_layer[layer]))      # mean θ descending, then head
        rank[layer, order] = np.arange(1, n_heads + 1)
    low, high = bootstrap_interval(thetas)
    rows = []
    for n in range(thetas.shape[1]):
        layer, head = divmod(n, n_heads)
        rows.append({"layer": layer, "head": head, "index": n, "theta_mean": float(mean[n]),
                     "theta_std": float(std[n]), "theta_min": float(thetas[:, n].min()),
                     "theta_max": float(thetas[:, n].max()), "theta_ci_low": float(low[n]),
                     "theta_ci_high": float(high[n]), "x_star_count": int(counts[n]),
                     "x_star_share": None if not val_records else float(shares[n]),
                     "above_threshold_share": float(above[n]), "kind": str(kind[n]),
                     "rank_in_layer": int(rank[layer, head])})
    k = min(int(top_k), n_heads)
    top = [[rows[layer * n_heads + h]["head"] for h in np.argsort(rank[layer])[:k]] for layer in range(n_layers)]
    styles = [str(r.meta.get("domain") or "") for r in val_records]
    return {
        "format": FORMAT, "version": VERSION,
        "model": meta.get("model"), "model_id": model_id, "dataset": ds, "data": meta.get("data"),
        "n_layers": n_layers, "n_heads": n_heads, "head_index": "index = layer * n_heads + head",
        "records": {"attribution": f"{attr_records[0].key.rsplit('/', 1)[0]}",
                    "validation": val_records[0].key.rsplit("/", 1)[0] if val_records else None},
        "settings": {"attribution": meta["settings"],
                     "validation": val_records[0].meta["settings"] if val_records else None},
        "n_samples": {"attribution": len(attr_records), "validation": len(val_records)},
        "samples": {"attribution": [str(r.meta.get("sample")) for r in attr_records],
                    "validation": [str(r.meta.get("sample")) for r in val_records]},
        "split": {"threshold": float(threshold), "share": float(share),
                  "sample_agnostic": [[int(n // n_heads), int(n % n_heads)] for n, a in zip(split_heads, agnostic) if a],
                  "sample_specific": [[int(n // n_heads), int(n % n_heads)] for n, a in zip(split_heads, agnostic)
                                      if not a]},
        "top_k": {"k": k, "by": "theta_mean", "layers": top},
        "stability": stability(thetas, x_star, others=others, styles=styles),
        "heads": rows,
    }


def to_csv(document: dict) -> str:
    """The document's per-head rows as CSV text (columns :data:`CSV_COLUMNS`; empty cell = null)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in document["heads"]:
        writer.writerow({k: ("" if row[k] is None else repr(row[k]) if isinstance(row[k], float) else row[k])
                         for k in CSV_COLUMNS})
    return buffer.getvalue()



# -- stability --------------------------------------------------------------------------------
def bootstrap_interval(thetas, n: int = BOOTSTRAP, level: float = LEVEL, seed: int = STABILITY_SEED):
    """Percentile bootstrap interval of mean θ per head: the samples resampled with replacement
    ``n`` times (seeded), the (1 − level)/2 and (1 + level)/2 quantiles of the resampled means.
    ``thetas`` [S, N] -> (low [N], high [N])."""
    import numpy as np

    thetas = np.asarray(thetas, dtype=np.float64)
    count = thetas.shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(count, np.full(count, 1.0 / count), size=n)      # [n, S]: draws of each sample
    means = weights @ thetas / count                                           # [n, N]
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return low, high


def majority(x_star) -> "np.ndarray":
    """The set of a group of samples: heads in x* in at least half of them (bool [N])."""
    import numpy as np

    return np.asarray(x_star, dtype=bool).mean(axis=0) >= 0.5


def jaccard(a, b) -> float:
    """|a ∩ b| / |a ∪ b| of two head sets (bool [N]); 1 where both are empty."""
    import numpy as np

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _summary(values) -> dict:
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


def sample_counts(total: int) -> list[int]:
    """Sample counts of the stability curve: 1, 2, 5, 10, 20, 50, ... below ``total``, then ``total``."""
    counts, base = [], 1
    while base < total:
        counts += [c for c in (base, 2 * base, 5 * base) if c < total]
        base *= 10
    return sorted(set(counts)) + [int(total)]


def top_set(thetas, k: int) -> "np.ndarray":
    """The k heads with the largest mean θ (ties: lower index), bool [N]."""
    import numpy as np

    from hearlib.method.effects import top_k_mask

    return top_k_mask(np.asarray(thetas, dtype=np.float64).mean(axis=0), k)


def stability(thetas, x_star, *, others: dict | None = None, styles: list[str] | None = None,
              splits: int = SPLITS, seed: int = STABILITY_SEED) -> dict:
    """How stable the head set is (docs/HEADS_FORMAT.md, "stability"). The set of a group of
    samples is :func:`majority` x*; with no validation records, the top-k heads by mean θ.

    * ``halves`` -- Jaccard of the sets of two disjoint random halves of the validation samples,
      over ``splits`` splits;
    * ``datasets`` / ``styles`` -- Jaccard of this set with the set of each other dataset of the
      store (same settings) and between the styles (the records' ``domain``) where there are several;
    * ``by_n_samples`` -- for each sample count n, the mean Jaccard between the set of n random
      samples and that of all samples (x*; and the top-k by mean θ, k = the size of the x* set, from
      the attribution samples).
    Intervals and Jaccards are seeded: the same records give the same numbers."""
    import numpy as np

    thetas = np.asarray(thetas, dtype=np.float64)
    x_star = np.asarray(x_star, dtype=bool)
    rng = np.random.default_rng(seed)
    n_val, n_attr = x_star.shape[0], thetas.shape[0]
    full = majority(x_star) if n_val else None
    k = max(1, int(full.sum())) if full is not None else None
    out: dict = {"bootstrap": {"resamples": BOOTSTRAP, "level": LEVEL, "seed": seed,
                               "method": "percentile; samples resampled with replacement"},
                 "set": "heads in x* in at least half of the samples", "set_size": None if full is None else int(full.sum()),
                 "splits": splits, "seed": seed, "halves": None, "datasets": [], "styles": None}
    if n_val >= 2:
        half = n_val // 2
        values = []
        for _ in range(splits):
            order = rng.permutation(n_val)
            values.append(jaccard(majority(x_star[order[:half]]), majority(x_star[order[half:2 * half]])))
        out["halves"] = {"n_samples": half, **_summary(values)}
    for name, other in sorted((others or {}).items()):
        if full is not None and len(other):
            out["datasets"].append({"dataset": name, "n_samples": int(len(other)),
                                    "jaccard": jaccard(full, majority(other))})
    if styles is not None and n_val:
        kinds = sorted({s for s in styles if s})
        if len(kinds) > 1:
            labels = np.array(styles)
            sets = {kind: majority(x_star[labels == kind]) for kind in kinds}
            out["styles"] = {"n_samples": {kind: int((labels == kind).sum()) for kind in kinds},
                             "pairs": [{"a": a, "b": b, "jaccard": jaccard(sets[a], sets[b])}
                                       for i, a in enumerate(kinds) for b in kinds[i + 1:]]}
    curve = {"n": [], "x_star_jaccard": [], "top_k_jaccard": [], "top_k": k}
    top_full = top_set(thetas, k) if k is not None else None
    for n in sample_counts(max(n_val, n_attr)):
        curve["n"].append(n)
        if full is not None and n <= n_val:
            curve["x_star_jaccard"].append(float(np.mean([
                jaccard(majority(x_star[rng.choice(n_val, n, replace=False)]), full) for _ in range(splits)])))
        else:
            curve["x_star_jaccard"].append(None)
        if top_full is not None and n <= n_attr:
            curve["top_k_jaccard"].append(float(np.mean([
                jaccard(top_set(thetas[rng.choice(n_attr, n, replace=False)], k), top_full) for _ in range(splits)])))
        else:
            curve["top_k_jaccard"].append(None)
    out["by_n_samples"] = curve
    return out


# -- other formats ----------------------------------------------------------------------------
SPARSEMM_SCORES = ("per-sample", "mean")


def sparsemm_scores(data: HeadData, scores: str = "per-sample") -> dict[str, list[float]]:
    """SparseMM's visual-head score file: ``{"L-H": [scores]}`` for every head, layers then heads in
    order (its loader reads the values in the file's order, as a flat [L·H] list, and takes the mean
    of each list). SparseMM's scores are non-negative hit counts that it normalises into shares of a
    KV-cache budget, where a negative θ would be a negative share, so θ is clipped at 0:

    * ``per-sample`` -- one score per attribution sample, θ clipped at 0 *per sample*; SparseMM's
      mean of them is the mean of max(θ, 0), which can rank heads differently from mean θ;
    * ``mean`` -- one score per head, mean θ clipped at 0 *after* averaging; SparseMM's mean of it is
      max(mean θ, 0), so its ranking of the heads with mean θ > 0 is hearlib's ranking by mean θ.

    UserError (:func:`check_sparsemm`) when SparseMM could not load the result."""
    import numpy as np

    if scores not in SPARSEMM_SCORES:
        raise UserError(f"unknown SparseMM scores {scores!r}; use {' or '.join(SPARSEMM_SCORES)}")
    n_heads = data.document["n_heads"]
    thetas = np.asarray(data.thetas, dtype=np.float64)
    values = thetas if scores == "per-sample" else thetas.mean(axis=0)[None]
    out = {f"{n // n_heads}-{n % n_heads}": [max(float(v), 0.0) for v in values[:, n]]
           for n in range(thetas.shape[1])}
    check_sparsemm(out, scores)
    return out


def check_sparsemm(scores: dict[str, list[float]], form: str = "per-sample") -> None:
    """UserError, one line, unless SparseMM's loader can use ``scores``: every list non-empty and
    finite, and the sum of the per-head means (``sum(head_score_list)``, by which ``SparseMM.__init__``
    divides) positive."""
    import numpy as np

    if not scores or any(len(v) == 0 for v in scores.values()):
        raise UserError("refusing to write a SparseMM score file without scores (no attribution sample)")
    means = [float(np.mean(v)) for v in scores.values()]
    if not all(np.isfinite(means)):
        raise UserError("refusing to write a SparseMM score file with non-finite scores (θ is NaN or infinite)")
    if sum(means) <= 0:
        clipped = "per sample" if form == "per-sample" else "after averaging"
        raise UserError(f"refusing to write a SparseMM score file SparseMM cannot load: every head's score is 0 "
                        f"after clipping θ at 0 ({clipped}), so SparseMM's loader would divide by zero "
                        f"(head_score_list / sum(head_score_list))")


def per_layer(document: dict) -> dict:
    """The per-layer layout: [layer][head] arrays of the per-head numbers, with the stability."""
    n_layers, n_heads = document["n_layers"], document["n_heads"]
    rows = document["heads"]

    def grid(name):
        return [[rows[layer * n_heads + head][name] for head in range(n_heads)] for layer in range(n_layers)]

    return {"format": FORMAT + "-per-layer", "version": VERSION, "model": document["model"],
            "model_id": document["model_id"], "dataset": document["dataset"], "n_layers": n_layers,
            "n_heads": n_heads, "layout": "values[layer][head]",
            "n_samples": document["n_samples"], "records": document["records"],
            **{name: grid(name) for name in ("theta_mean", "theta_std", "theta_ci_low", "theta_ci_high",
                                              "x_star_share", "above_threshold_share")},
            "top_k": document["top_k"], "split": document["split"], "stability": document["stability"]}


def export(data: HeadData, fmt: str, *, sparsemm: str = "per-sample") -> str:
    """The text of the head set in ``fmt`` (:data:`FORMATS`); ``sparsemm``: the score form of
    :func:`sparsemm_scores` (:data:`SPARSEMM_SCORES`)."""
    from hearlib.io import jsonable

    if fmt == "hearlib":
        return json.dumps(data.document, indent=2, sort_keys=True, default=jsonable)
    if fmt == "sparsemm":
        return json.dumps(sparsemm_scores(data, sparsemm))  # key order is the head order: never sorted
    if fmt == "per-layer":
        return json.dumps(per_layer(data.document), indent=2, default=jsonable)
    raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def read_sparsemm(path: str | Path, n_layers: int, n_heads: int) -> "np.ndarray":
    """A SparseMM score file back as scores [S, N] (head n = l·H + h); UserError unless it holds
    every head of an n_layers × n_heads model with the same number of samples."""
    import numpy as np

    try:
        scores = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read SparseMM score file {path}: {error}") from None
    expected = [f"{n // n_heads}-{n % n_heads}" for n in range(n_layers * n_heads)]
    if not isinstance(scores, dict) or sorted(scores) != sorted(expected):
        raise UserError(f"{path} is not a SparseMM score file of {n_layers}×{n_heads} heads")
    lengths = {len(v) for v in scores.values()}
    if len(lengths) != 1:
        raise UserError(f"{path}: the heads hold different numbers of samples")
    return np.array([scores[key] for key in expected], dtype=np.float64).T


def read_per_layer(path: str | Path) -> dict:
    """A per-layer file back as a dict; UserError unless it is one."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read per-layer heads file {path}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT + "-per-layer" \
            or document.get("version") != VERSION:
        raise UserError(f"{path} is not a per-layer heads file ({FORMAT}-per-layer, version {VERSION})")
    return document

# -- head sets from a heads document ----------------------------------------------------------
SELECTIONS = "x-star[:SHARE], top-k:K or agnostic"
DEFAULT_SELECT = "top-k:10"     # the CLI's default: never empty, unlike x*, where no head is in most samples' x*
X_STAR_SHARE = 0.5              # x-star without :SHARE


def read_heads(path: str | Path) -> dict:
    """A heads document (docs/HEADS_FORMAT.md) from its JSON file; UserError unless it is one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"heads file not found: {path}")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read heads file {path}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise UserError(f"{path} is not a 'hearlib heads' JSON file (format {FORMAT!r}, version {VERSION})")
    return document


def select_heads(document: dict, select: str) -> list[tuple[int, int]]:
    """The (layer, head) pairs a selection names, in (layer, head) order:

    * ``x-star[:SHARE]`` -- heads in x* in at least SHARE of the validation samples (default 0.5);
    * ``top-k:K`` -- the K heads with the largest mean θ over all layers (ties: lower index first);
    * ``agnostic`` -- Fig. 10's sample-agnostic heads (``split.sample_agnostic``)."""
    import numpy as np

    kind, _, value = str(select).strip().partition(":")
    rows = document["heads"]
    if kind == "x-star":
        try:
            share = float(value) if value else X_STAR_SHARE
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise UserError(f"--select x-star:SHARE needs a share in (0, 1], got {value!r}")
        if not document["n_samples"].get("validation"):
            raise UserError("the heads file has no validation records, so no x*; use --select top-k:K or agnostic")
        chosen = [(r["layer"], r["head"]) for r in rows if r["x_star_share"] is not None and r["x_star_share"] >= share]
    elif kind == "top-k":
        try:
            k = int(value)
        except ValueError:
            k = 0
        if k < 1:
            raise UserError(f"--select top-k:K needs a positive integer K, got {value!r}")
        theta = np.array([r["theta_mean"] for r in rows], dtype=float)
        order = np.lexsort((np.arange(len(rows)), -theta))[:k]
        chosen = [(rows[n]["layer"], rows[n]["head"]) for n in order]
    elif kind == "agnostic" and not value:
        chosen = [tuple(pair) for pair in document["split"]["sample_agnostic"]]
    else:
        raise UserError(f"unknown selection {select!r}; use {SELECTIONS}")
    return sorted((int(layer), int(head)) for layer, head in chosen)


def empty_selection_warning(document: dict, select: str, name: str) -> str | None:
    """A one-line warning when ``select`` (valid) chooses no head of ``document`` (read from ``name``),
    naming the x* share used; None otherwise."""
    if select_heads(document, select):
        return None
    kind, _, value = str(select).strip().partition(":")
    if kind == "x-star":
        share = float(value) if value else X_STAR_SHARE
        return (f"warning: --select {select} chooses no head of {name}: no head is in x* in at least "
                f"{share:g} of its {document['n_samples'].get('validation')} validation samples (share {share:g}"
                f"{', the default' if not value else ''}); try a lower x-star:SHARE or top-k:K")
    return f"warning: --select {select} chooses no head of {name}"


# -- comparing two head sets ------------------------------------------------------------------
def _set_of(document: dict, select: str) -> "np.ndarray":
    import numpy as np

    member = np.zeros(document["n_layers"] * document["n_heads"], dtype=bool)
    for layer, head in select_heads(document, select):
        member[layer * document["n_heads"] + head] = True
    return member


def diff_heads(a: dict, b: dict, select: str = "x-star") -> dict:
    """Two heads documents of one geometry (two models, checkpoints or datasets) compared: the heads
    ``select`` chooses in b and not in a (gained), in a and not in b (lost), in both; the Jaccard of
    the two sets; Spearman's and Pearson's correlation of mean θ over all heads."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    if (a["n_layers"], a["n_heads"]) != (b["n_layers"], b["n_heads"]):
        raise UserError(f"the two head sets have different geometries: {a['n_layers']}×{a['n_heads']} "
                        f"({a.get('model_id')}) and {b['n_layers']}×{b['n_heads']} ({b.get('model_id')})")
    n_heads = a["n_heads"]
    set_a, set_b = _set_of(a, select), _set_of(b, select)
    theta_a = np.array([r["theta_mean"] for r in a["heads"]], dtype=np.float64)
    theta_b = np.array([r["theta_mean"] for r in b["heads"]], dtype=np.float64)

    def pairs(mask):
        return [[int(n // n_heads), int(n % n_heads)] for n in np.flatnonzero(mask)]

    def correlation(function) -> float | None:
        if theta_a.std() == 0 or theta_b.std() == 0:
            return None
        return float(function(theta_a, theta_b)[0])

    return {"a": {"model_id": a.get("model_id"), "dataset": a.get("dataset"), "set_size": int(set_a.sum())},
            "b": {"model_id": b.get("model_id"), "dataset": b.get("dataset"), "set_size": int(set_b.sum())},
            "select": select, "n_layers": a["n_layers"], "n_heads": n_heads,
            "gained": pairs(set_b & ~set_a), "lost": pairs(set_a & ~set_b), "kept": pairs(set_a & set_b),
            "jaccard": jaccard(set_a, set_b), "spearman_theta": correlation(spearmanr),
            "pearson_theta": correlation(pearsonr)}
