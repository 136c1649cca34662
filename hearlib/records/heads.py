"""A model's image-to-text heads, from a store, as JSON and CSV (``hearlib heads``, :mod:`hearlib.cli.heads`).

Reads the attribution (θ) and validation (x*) records that ``hearlib run`` stored for one model
and writes, per (layer, head), the mean θ and its spread over the samples, how often the head is
in x*, Fig. 10's sample-agnostic / sample-specific split (:func:`hearlib.paper.analysis.sample_agnostic_heads`)
and the top-k heads of each layer, with the record settings and the sample counts. The format is
described in docs/HEADS_FORMAT.md, for tools that read head sets (KV-cache compression, pruning).
No model is loaded and nothing is computed but statistics of the stored records.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from hearlib.errors import UserError

FORMAT = "hearlib-heads"
VERSION = 1
CSV_COLUMNS = ("layer", "head", "index", "theta_mean", "theta_std", "theta_min", "theta_max", "x_star_count",
               "x_star_share", "above_threshold_share", "kind", "rank_in_layer")



def _model_matches(query: str, meta: dict) -> bool:
    model, model_id = str(meta.get("model", "")), str(meta.get("model_id", ""))
    names = {model, model_id, Path(model).name} - {""}
    return query in names or query.rstrip("/") in names or Path(query).name in names


def _groups(store, model: str) -> tuple[str, dict[tuple, list]]:
    """(the model's id, {(dataset, stage dir): [records]}) of the attribution and validation records."""
    from hearlib.records.store import slug

    found: dict[str, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for key in store.keys():
        parts = key.split("/")
        if len(parts) != 4 or not parts[2].startswith(("attribution-", "validation-")):
            continue
        record = store.get(key)
        if record is None:
            continue
        meta = record.meta
        if _model_matches(model, meta) or slug(model) == parts[0]:
            found[str(meta.get("model_id", parts[0]))][(str(meta.get("dataset", parts[1])), parts[2])].append(record)
    if not found:
        raise UserError(f"no attribution or validation records for model {model!r} in {store.root}")
    if len(found) > 1:
        raise UserError(f"model {model!r} is ambiguous in {store.root}: {', '.join(sorted(found))}")
    model_id, groups = next(iter(found.items()))
    return model_id, groups


def _attribution_part(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in ("stage", "versions", "threshold", "criteria")}


def head_table(store_root: str | Path, model: str, *, dataset: str | None = None, prompt: str | None = None,
               settings: str | None = None, top_k: int = 5, threshold: float = 0.1, share: float = 0.5) -> dict:
    """The heads document (docs/HEADS_FORMAT.md) of ``model`` from the store at ``store_root``."""
    import numpy as np

    from hearlib.paper.analysis import sample_agnostic_heads
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
    def validation_of(group, records) -> list:
        """The validation records made on top of these attribution records (the most samples, then
        the most criteria: the main study's, not a ratio sweep's HeAr-only ones)."""
        base = _attribution_part(records[0].meta["settings"])
        found = [r for g, r in groups.items() if g[0] == group[0] and g[1].startswith("validation-")
                 and _attribution_part(r[0].meta["settings"]) == base]
        found.sort(key=lambda r: (-len(r[0].meta["settings"].get("criteria", [])), -len(r), r[0].key))
        return sorted(found[0], key=lambda r: r.key) if found else []

    def rank(item):
        val = validation_of(*item)
        return (-(len(val[0].meta["settings"].get("criteria", [])) if val else 0), -len(item[1]), -len(val))

    ranked = sorted(((rank(item), item) for item in attribution.items()), key=lambda x: (x[0], x[1][0]))
    if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
        raise UserError(f"several attribution settings for model {model_id!r} serve equally well: "
                        f"{', '.join('/'.join(item[0]) for _, item in ranked)}; choose with --dataset, --prompt "
                        f"or --settings")
    (ds, folder), attr_records = ranked[0][1]
    val_records = validation_of((ds, folder), attr_records)
    attr_records = sorted(attr_records, key=lambda r: r.key)
    attr_settings = attr_records[0].meta["settings"]
    n_layers, n_heads = int(attr_records[0].meta["n_layers"]), int(attr_records[0].meta["n_heads"])
    thetas = np.stack([np.asarray(r.arrays["theta"], dtype=np.float64) for r in attr_records])   # [S, N]
    if thetas.shape[1] != n_layers * n_heads:
        raise UserError(f"attribution records of {model_id!r} hold {thetas.shape[1]} heads, not {n_layers}·{n_heads}")
    x_star = (np.stack([np.asarray(r.arrays["x_star"], dtype=bool) for r in val_records]) if val_records
              else np.zeros((0, thetas.shape[1]), dtype=bool))

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
    rows = []
    for n in range(thetas.shape[1]):
        layer, head = divmod(n, n_heads)
        rows.append({"layer": layer, "head": head, "index": n, "theta_mean": float(mean[n]),
                     "theta_std": float(std[n]), "theta_min": float(thetas[:, n].min()),
                     "theta_max": float(thetas[:, n].max()), "x_star_count": int(counts[n]),
                     "x_star_share": None if not val_records else float(shares[n]),
                     "above_threshold_share": float(above[n]), "kind": str(kind[n]),
                     "rank_in_layer": int(rank[layer, head])})
    k = min(int(top_k), n_heads)
    top = [[rows[layer * n_heads + h]["head"] for h in np.argsort(rank[layer])[:k]] for layer in range(n_layers)]
    meta = attr_records[0].meta
    return {
        "format": FORMAT, "version": VERSION,
        "model": meta.get("model"), "model_id": model_id, "dataset": ds, "data": meta.get("data"),
        "n_layers": n_layers, "n_heads": n_heads, "head_index": "index = layer * n_heads + head",
        "records": {"attribution": f"{attr_records[0].key.rsplit('/', 1)[0]}",
                    "validation": val_records[0].key.rsplit("/", 1)[0] if val_records else None},
        "settings": {"attribution": attr_settings,
                     "validation": val_records[0].meta["settings"] if val_records else None},
        "n_samples": {"attribution": len(attr_records), "validation": len(val_records)},
        "samples": {"attribution": [str(r.meta.get("sample")) for r in attr_records],
                    "validation": [str(r.meta.get("sample")) for r in val_records]},
        "split": {"threshold": float(threshold), "share": float(share),
                  "sample_agnostic": [[int(n // n_heads), int(n % n_heads)] for n, a in zip(split_heads, agnostic) if a],
                  "sample_specific": [[int(n // n_heads), int(n % n_heads)] for n, a in zip(split_heads, agnostic)
                                      if not a]},
        "top_k": {"k": k, "by": "theta_mean", "layers": top},
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
