"""Which of transformers' image-text-to-text model types hearlib covers, and why not the others.

:func:`coverage` walks ``MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES`` of the installed transformers:
a model type with a record in :mod:`hearlib.families.registry` is checked end to end on its tiny
random-weight model by :func:`check_family` (status ``works``, and what was checked); every other
model type gets the one-line reason of :data:`REASONS` (read from the transformers source of
that model type), or "not registered yet" where no reason is recorded. :func:`real_files` says
which model types tests/families/test_real_configs.py also runs at the real geometry of a published
checkpoint, from its hub files under tests/data/hub (``hearlib.families.real.REAL_MODELS``). The table of
docs/MODELS.md ("Model types") is :func:`coverage_table`; ``python -m hearlib.paper.coverage --write``
regenerates it (the check of every family takes about two minutes on two CPU cores).
``--check`` runs :func:`check_family` on every registered family under the installed release only
(:func:`check_release`; .ci/versions runs it on the oldest and the newest release hearlib supports).
"""
from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the kinds of refusal and the reason per model type (data only, shared with hearlib.families.registry)
from hearlib.families.refusals import NOT_YET, REASONS

__all__ = ["CHECKS", "Coverage", "check_family", "check_release", "coverage", "coverage_table", "real_files",
           "write_table"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "MODELS.md"
BEGIN, END = "<!-- coverage: begin -->", "<!-- coverage: end -->"

# What check_family establishes for a working family (the "checked" column).
CHECKS = ("prepare", "record", "fast = literal ≤ 1e-4", "all-intact = unpatched ≤ 1e-5",
          "own-image means: full ablation a no-op ≤ 1e-5", "image-token geometry")


@dataclass(frozen=True)
class Coverage:
    """One row of the coverage table."""

    model_type: str
    status: str          # "works" or the kind of refusal
    checked: str         # what was checked ("" when refused)
    reason: str          # why not; for a working type the family's name and note
    real: str = ""       # the hub folders whose real geometry tests/families/test_real_configs.py runs ("" when none)


def check_family(model_type: str, folder: Path | None = None, seed: int = 0) -> str:
    """Build the family's tiny model and check it end to end; the list of checks, or AssertionError.

    prepare and record a sample; fast = literal on random head/text/image masks (≤ 1e-4, masks
    that move the logit); all-intact masks = the unpatched model (eager attention, ≤ 1e-5); means
    from the sample's own image make full ablation a no-op (≤ 1e-5); the image-token layout names
    every image token once."""
    from PIL import Image

    import torch

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.means import compute_means
    from hearlib.method.loading import load_engine
    from hearlib.families.tiny import build_tiny

    with tempfile.TemporaryDirectory() as tmp:
        engine = load_engine(build_tiny(model_type, Path(folder or tmp), seed=seed))
        rng = np.random.default_rng(seed)
        images = [Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")) for _ in range(3)]
        sample = engine.prepare(images[0], answer="dog")
        record = engine.record(sample)
        means = compute_means(engine, images[1:], progress=False)
        heads = rng.random((4, engine.n_total_heads)) > 0.5
        text = rng.random((4, sample.n_text)) > 0.3
        image = rng.random((4, sample.n_image)) > 0.3
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)    # a prefix-LM runs the literal path, and says so
            fast = engine.logits(sample, means, heads, text, image, method="fast")
        literal = engine.logits(sample, means, heads, text, image, method="literal")
        assert np.abs(fast - literal).max() <= 1e-4, f"fast − literal = {np.abs(fast - literal).max():.2e}"
        assert np.ptp(literal) > 1e-3, "the masks did not move the logit"
        model = engine.model
        model.set_attn_implementation({engine.family.text_config: "eager"})
        try:
            with torch.no_grad():
                logits = model(**sample.inputs).logits[0, -1].double()
        finally:
            model.set_attn_implementation({engine.family.text_config: "hear"})
        expected = float(logits[sample.answer_id] - logits.mean())
        intact = np.ones((1, engine.n_total_heads), bool)
        for method in ("fast", "literal"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                got = engine.logits(sample, means, intact, method=method)[0]
            assert abs(got - expected) <= 1e-5, f"intact {method} {got} vs unpatched {expected}"
        assert abs(record.logit - expected) <= 1e-5
        own = compute_means(engine, [images[0]], progress=False)
        ablated = np.zeros((1, engine.n_total_heads), bool)
        for method in ("fast", "literal"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                got = engine.logits(sample, own, ablated, method=method)[0]
            assert abs(got - record.logit) <= 1e-5, f"own-image {method} ablation {got} vs intact {record.logit}"
        layout = image_token_layout(engine, sample)
        assert layout.n_tokens == sample.n_image
    path = "fast path" if engine.fast_path_problem(sample) is None else "literal path (fast premise fails)"
    return "; ".join(CHECKS) + f"; {sample.n_image} image tokens; {path}"


def real_files() -> dict[str, list[str]]:
    """model_type -> the folders under tests/data/hub (``hearlib.families.real.REAL_MODELS``) whose real
    config, processor and tokenizer files tests/families/test_real_configs.py builds a random-weight model of
    (depth cut, widths and heads as published) and runs end to end; "(stand-in tokenizer)" after a
    folder whose tokenizer files are not committed (``hearlib.families.real.has_real_tokenizer``)."""
    import json

    from hearlib.families.real import REAL_HUB, REAL_MODELS, has_real_tokenizer

    found: dict[str, list[str]] = {}
    for name, folder in REAL_MODELS.items():
        config = json.loads((REAL_HUB / folder / "config.json").read_text())
        model_type = config.get("thinker_config", config)["model_type"]   # an Omni checkpoint: its thinker's
        found.setdefault(model_type, []).append(
            f"`{folder}`" + ("" if has_real_tokenizer(name) else " (stand-in tokenizer)"))
    return found


def model_types() -> list[str]:
    """Every model type transformers maps to AutoModelForImageTextToText."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return list(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def coverage(check=check_family) -> list[Coverage]:
    """One row per image-text-to-text model type: registered families checked by ``check``."""
    from hearlib.families.registry import FAMILIES

    rows = []
    real = real_files()
    for model_type in model_types():
        if model_type in FAMILIES:
            family = FAMILIES[model_type]
            rows.append(Coverage(model_type, "works", check(model_type), f"{family.name}: {family.note}",
                                 ", ".join(real.get(model_type, []))))
        else:
            kind, reason = REASONS.get(model_type, (NOT_YET, "no family record; its transformers source has not "
                                                              "been examined for hearlib yet"))
            rows.append(Coverage(model_type, kind, "", reason))
    return rows


def coverage_table(rows: list[Coverage]) -> str:
    """The Markdown section of docs/MODELS.md between the coverage markers."""
    works = sum(r.status == "works" for r in rows)
    real = sum(bool(r.real) for r in rows)
    lines = [BEGIN, f"{works} of {len(rows)} model types work; generated by `python -m hearlib.paper.coverage --write` "
                    "(checked by `tests/families/test_coverage.py`). \"Real geometry\": the hub files under "
                    f"`tests/data/hub/` whose geometry `tests/families/test_real_configs.py` runs end to end ({real} model "
                    "types); \"no\": checked on the tiny model only.", "",
             "| model type | status | checked on the tiny model | real geometry (hub files) | "
             "family and note, or why not |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        real_cell = r.real or ("no" if r.status == "works" else "")
        lines.append(f"| `{r.model_type}` | {r.status} | {r.checked} | {real_cell} | {r.reason} |")
    return "\n".join(lines + [END]) + "\n"


def replace_table(doc: str, table: str) -> str:
    """``doc`` with its coverage section replaced by ``table`` (appended if absent)."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: table, doc)
    return doc.rstrip("\n") + "\n\n## Model types in transformers\n\n" + table


def write_table(rows: list[Coverage], doc: Path = DOC) -> None:
    doc.write_text(replace_table(doc.read_text(), coverage_table(rows)))


def check_release(check=None) -> dict[str, str]:
    """Every registered family checked end to end under the installed transformers, printed as it goes:
    model type -> the checks, ``absent from transformers <release>`` (a model type it does not define),
    ``<name> needs transformers >= <release> (why)`` (the family's ``requires``), or ``FAILED: <error>``."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    from hearlib.families.registry import FAMILIES

    check = check or check_family
    results = {}
    for model_type in FAMILIES:
        if model_type not in CONFIG_MAPPING_NAMES:
            results[model_type] = f"absent from transformers {transformers.__version__}"
        elif FAMILIES[model_type].release_problem():
            results[model_type] = FAMILIES[model_type].release_problem()
        else:
            try:
                results[model_type] = check(model_type)
            except Exception as error:              # reported per family; the caller decides
                results[model_type] = f"FAILED: {type(error).__name__}: {error}"
        print(f"{model_type}: {results[model_type]}", flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table into docs/MODELS.md")
    parser.add_argument("--check", action="store_true",
                        help="check every registered family under the installed transformers only (no table); "
                             "exit status 1 if one fails")
    args = parser.parse_args(argv)
    if args.check:
        results = check_release()
        failed = [t for t, r in results.items() if r.startswith("FAILED")]
        print(f"{len(results) - len(failed)} of {len(results)} families pass or are absent from this release"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
        raise SystemExit(1 if failed else 0)
    rows = coverage()
    if args.write:
        write_table(rows)
    print(coverage_table(rows))


if __name__ == "__main__":
    main()
