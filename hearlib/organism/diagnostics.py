"""Diagnostics of where an organism can read the image, taken before any new design is trained
(issue 38; docs/ORGANISM.md, "Diagnostics").

``probes``    what the image tokens carry at the decoder's input: linear and MLP probes for the main
              object's category and colour, per style, on the image tokens' mean, the object's own
              tokens (from the scene's mask), its best-covered token, a background token and single
              tokens (:mod:`hearlib.method.tokenprobes`)
``colours``   what a colour question's wrong answers are: a distractor's colour, a neighbouring hue,
              another colour, or not a colour, against what a random wrong colour would give
``text``      where a text-only decoder reads its context: the text-pretraining stage's decoder on
              held-out question documents, the question's attention to the description blocked in
              a window of layers (attention knockout, Geva et al. 2023), per start layer
``prompts``   whether the image read depends on a fixed distance from the final position to the image:
              window knockout of the object question under prompts of different lengths, those the
              organism was trained on and unseen ones (the fixed prompt length of issue 38's "Why")

``python -m hearlib.organism.diagnostics probes|colours|text|prompts ...`` prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from hearlib.organism import scenes
from hearlib.organism.recipe import TEXT_CORPORA, color_name

__all__ = ["image_token_probes", "projector_input_tokens", "colour_misses", "hue_neighbours", "classify_miss", "context_knockout",
           "blocked_context", "text_documents", "text_knockout", "UNSEEN_PROMPTS", "text_after_image",
           "prompt_knockout", "peak_stability", "main"]

LABELS = {"category": "object", "colour": "color"}


# ----------------------------------------------------------------------------- image-token probes

def _scene_items(scenes_dir: Path, n_scenes: int, styles) -> list[tuple[str, dict]]:
    """(relative image path, its label) of the first ``n_scenes`` scenes in each style."""
    images = json.loads((Path(scenes_dir) / "labels.json").read_text())["images"]
    return [(path, label) for path, label in images.items()
            if label["scene_id"] < n_scenes and label["style"] in styles]


@torch.no_grad()
def projector_input_tokens(engine, sample) -> np.ndarray:
    """[P_img, d_tower] the tower's tokens as the organism's projector reads them (what the tower alone
    carries, whatever the projector has learnt: design D1's gate before its decoder is trained)."""
    captured = {}

    def capture(module, args):
        captured["tokens"] = args[0]

    handle = engine.model.model.multi_modal_projector.register_forward_pre_hook(capture)
    try:
        engine.model(**sample.inputs, use_cache=False)
    finally:
        handle.remove()
    return captured["tokens"].reshape(-1, captured["tokens"].shape[-1]).float().cpu().numpy()


def image_token_probes(model, scenes_dir, n_scenes: int = 300, styles=scenes.STYLES, n_single: int = 8,
                       seed: int = 0, progress: bool = True, at: str = "decoder") -> dict:
    """Probe accuracy per style ("all" too), label, feature and classifier (docs at the module top),
    on the decoder's input (``at="decoder"``) or the projector's (``"projector"``: the tower's tokens)."""
    from tqdm import tqdm

    from hearlib.families.geometry import image_token_layout
    from hearlib.method.loading import load_engine
    from hearlib.method.tokenprobes import FEATURES, decoder_input_tokens, probe, token_coverage, token_features

    engine = load_engine(model)
    rng = np.random.default_rng(seed)
    rows = []
    for path, label in tqdm(_scene_items(scenes_dir, n_scenes, styles), desc="image tokens", disable=not progress):
        sample = engine.prepare(Path(scenes_dir) / path)
        scene = scenes.make_scene(label["seed"], label["scene_id"])
        cover = token_coverage(image_token_layout(engine, sample), scenes.object_mask(scene.main, scenes.IMAGE_SIZE))
        tokens = (decoder_input_tokens if at == "decoder" else projector_input_tokens)(engine, sample)
        rows.append((label, token_features(tokens, cover, rng, n_single)))
    out: dict = {"model": str(model), "at": at, "n_scenes": n_scenes, "features": list(FEATURES), "results": {}}
    for style in [*styles, "all"]:
        chosen = [(label, f) for label, f in rows if style in ("all", label["style"])]
        for name, key in LABELS.items():
            labels = [label[key] for label, _ in chosen]
            for feature in FEATURES:
                x = np.stack([f[feature] for _, f in chosen])
                y, groups = labels, None
                if x.ndim == 3:                        # several single tokens per image, grouped by image
                    y = np.repeat(labels, x.shape[1])
                    groups = np.repeat(np.arange(len(chosen)), x.shape[1])
                    x = x.reshape(-1, x.shape[-1])
                for classifier in ("linear", "mlp"):
                    result = probe(x, y, groups, classifier=classifier, seed=seed)
                    out["results"].setdefault(style, {}).setdefault(name, {}).setdefault(feature, {})[classifier] = result
    return out


# ----------------------------------------------------------------------------- colour misses

def hue_neighbours() -> dict[str, tuple[str, str]]:
    """Each named colour's two neighbours on the hue circle of :data:`scenes.COLORS`."""
    hue = {name: colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[0] for name, rgb in scenes.COLORS.items()}
    ring = sorted(hue, key=hue.get)
    return {name: (ring[i - 1], ring[(i + 1) % len(ring)]) for i, name in enumerate(ring)}


def classify_miss(predicted: str, scene) -> str:
    """What a wrong colour answer is, in this order: ``distractor`` (a distractor's colour),
    ``neighbour`` (next to the true colour on the hue circle), ``other colour``, ``not a colour``."""
    if predicted in {color_name(d.color) for d in scene.distractors} - {scene.color}:
        return "distractor"
    if predicted in hue_neighbours()[scene.color]:
        return "neighbour"
    return "other colour" if predicted in scenes.COLORS else "not a colour"


def colour_misses(model, scenes_dir, style: str = "clipart", n_scenes: int = 300, progress: bool = True) -> dict:
    """The colour question on ``n_scenes`` scenes of ``style``: accuracy, the misses by kind, and the
    count of each kind expected if a miss picked one of the five wrong colours at random."""
    from tqdm import tqdm

    from hearlib.method.loading import load_engine
    from hearlib.prompts import COLOR_PROMPT

    engine = load_engine(model)
    kinds = ("distractor", "neighbour", "other colour", "not a colour")
    observed, expected, misses = dict.fromkeys(kinds, 0), dict.fromkeys(kinds[:3], 0.0), []
    items = _scene_items(scenes_dir, n_scenes, (style,))
    for path, label in tqdm(items, desc=f"colour, {style}", disable=not progress):
        sample = engine.prepare(Path(scenes_dir) / path, prompt=COLOR_PROMPT)
        with torch.no_grad():
            logits = engine.model(**sample.inputs, use_cache=False).logits[0, -1]
        predicted = engine.tokenizer.decode([int(logits.argmax())]).strip()
        if predicted == label["color"]:
            continue
        scene = scenes.make_scene(label["seed"], label["scene_id"])
        kind = classify_miss(predicted, scene)
        observed[kind] += 1
        wrong = [c for c in scenes.COLORS if c != scene.color]
        for colour in wrong:
            expected[classify_miss(colour, scene)] += 1 / len(wrong)
        misses.append({"image": path, "true": scene.color, "predicted": predicted, "kind": kind,
                       "distractors": [color_name(d.color) for d in scene.distractors]})
    return {"model": str(model), "style": style, "n": len(items), "accuracy": 1 - len(misses) / max(len(items), 1),
            "observed": observed, "expected_if_random": expected, "misses": misses}


# ----------------------------------------------------------------------------- text-only knockout

@contextmanager
def blocked_context(attention_modules, queries: slice, context: slice, seq_len: int):
    """While open, the positions ``queries`` attend nowhere in ``context`` in the given attention
    modules (a causal additive mask handed to each in place of the model's own); hooks removed in
    ``finally``."""
    handles = []

    def hook(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        lowest = torch.finfo(hidden.dtype).min
        mask = torch.full((seq_len, seq_len), lowest, dtype=hidden.dtype, device=hidden.device).triu(1)
        mask[queries, context] = lowest
        kwargs["attention_mask"] = mask[None, None]
        return args, kwargs

    try:
        handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in attention_modules]
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def context_knockout(lm, head, ids: torch.Tensor, context: slice, answer_id: int, width: int = 1) -> np.ndarray:
    """π per window start l: the answer logit at the last position with the positions after
    ``context`` blocked from it in layers [l, l + w), as (ℓ_window − ℓ_all) / (ℓ_clean − ℓ_all), where
    ``ℓ_all`` blocks it in every layer. 1 − π is the share of the context's effect the window carries."""
    attention = [layer.self_attn for layer in lm.layers]
    queries, seq_len = slice(context.stop, ids.shape[-1]), ids.shape[-1]

    def answer_logit(modules) -> float:
        with blocked_context(modules, queries, context, seq_len):
            hidden = lm(input_ids=ids[None], use_cache=False).last_hidden_state
        return float(head(hidden[0, -1])[answer_id])

    clean, blocked = answer_logit([]), answer_logit(attention)
    windows = [answer_logit(attention[start:start + width]) for start in range(len(attention) - width + 1)]
    return (np.asarray(windows) - blocked) / (clean - blocked)


def text_documents(seed: int = 1, n: int = 300, kind: str = "one-step") -> list[dict]:
    """Held-out question documents of the text-pretraining corpus ``kind`` (scenes of ``seed``): the text
    up to ``ASSISTANT:``, the description it reads, the question, the answer, the scene's index and ``steps``
    (1, or 2 for a referent bound first, :func:`hearlib.organism.recipe.two_step_question`)."""
    from hearlib.organism.recipe import BINDINGS, corpus

    referents = tuple(binding.split(" is ")[0] for binding in BINDINGS)
    out = []
    for index, (text, answer) in enumerate(corpus(seed, n, kind=kind)):
        if answer is None:
            continue
        head_text, question = text.rsplit("\n", 1)
        question = question.rsplit(" ASSISTANT:", 1)[0]
        out.append({"prompt": text[: -len(answer)].rstrip(), "description": head_text[len("USER: "):],
                    "question": question, "answer": answer,
                    "steps": 2 if question.startswith(referents) else 1, "scene": index})
    return out


def text_knockout(trainer, n: int = 300, widths=(1, 2)) -> dict:
    """The median over held-out documents of 1 − π per window start, for each width, on the decoder
    of a staged trainer whose text stage is finished (``StagedTrainer.run(until="text")``); the
    documents of its own corpus, all together and (``by_steps``) one- and two-step questions apart."""
    tok, lm, head = trainer.tok, trainer.lm, trainer.head
    rows = []
    for doc in text_documents(n=n, kind=trainer.recipe.text_corpus):
        ids = torch.tensor(tok(doc["prompt"])["input_ids"])
        start = len(tok("USER:")["input_ids"])
        stop = len(tok("USER: " + doc["description"])["input_ids"])
        answer_id = tok(doc["answer"], add_special_tokens=False)["input_ids"][0]
        with torch.no_grad():
            logits = head(lm(input_ids=ids[None], use_cache=False).last_hidden_state[0, -1])
        if int(logits.argmax()) != answer_id:
            continue                                 # as the study: documents the decoder answers
        rows.append((doc["steps"], {w: context_knockout(lm, head, ids, slice(start, stop), answer_id, w) for w in widths}))
    n_layers = len(lm.layers)
    result = {"corpus": trainer.recipe.text_corpus, **_knockout_summary([pis for _, pis in rows], widths, n_layers),
              "by_steps": {}}
    for steps in sorted({s for s, _ in rows}):
        result["by_steps"][str(steps)] = _knockout_summary([pis for s, pis in rows if s == steps], widths, n_layers)
    return result


def _knockout_summary(rows: list[dict], widths, n_layers: int) -> dict:
    from hearlib.method.readsite import knockout_drop, peak_layer, relative_depth

    result = {"n_documents": len(rows), "n_layers": n_layers, "widths": {}}
    for w in widths:
        curve = knockout_drop([pis[w] for pis in rows])
        peak = peak_layer(curve)
        result["widths"][str(w)] = {"drop": curve.tolist(), "peak_layer": peak,
                                    "relative_depth": relative_depth(peak, n_layers)}
    return result


# ----------------------------------------------------------------------------- prompt lengths

# object questions of lengths the organisms never saw in training (their words are the vocabulary's)
UNSEEN_PROMPTS = ("What is the main object in the image?",
                  "What is the main object in the image? Please answer with a single word. "
                  "Please answer with a single word.",
                  "What is the main object in the image? Please answer with a single word. "
                  "Please answer with a single word. Please answer with a single word.")


def text_after_image(sample) -> int:
    """How many positions follow the last image token: the distance from the final position to the image."""
    return int(sample.seq_len - 1 - int(sample.image_positions.max()))


def prompt_knockout(model, scenes_dir, prompts, n_scenes: int = 14, n_reference: int = 100,
                    progress: bool = True) -> dict:
    """Window knockout (w = 1) of the object question under each prompt, on the first ``n_scenes`` held-out
    scenes per style (those answered correctly under that prompt), with the means of the last ``n_reference``
    images of ``scenes_dir``: per prompt the positions after the image, the accuracy, the drop curve
    (:func:`hearlib.method.readsite.knockout_drop`) and its peak layer."""
    from tqdm import tqdm

    from hearlib.method.loading import load_engine
    from hearlib.method.means import compute_means
    from hearlib.method.readsite import knockout_drop, peak_layer, relative_depth, window_knockout
    from hearlib.records.pipeline import mean_reference_images

    engine = load_engine(model)
    means = compute_means(engine, mean_reference_images(Path(scenes_dir), n_reference), progress=False)
    items = _scene_items(scenes_dir, n_scenes, scenes.STYLES)
    out = {"model": str(model), "n_scenes": len(items), "n_reference": n_reference, "n_layers": engine.n_layers,
           "prompts": []}
    for prompt in prompts:
        pis, offset = [], None
        for path, label in tqdm(items, desc=prompt[:40], disable=not progress):
            sample = engine.prepare(Path(scenes_dir) / path, answer=label["object"], prompt=prompt)
            offset = text_after_image(sample)
            if engine.record(sample).correct:
                pis.append(window_knockout(engine, sample, means, 1))
        curve = knockout_drop(pis) if pis else np.full(engine.n_layers, np.nan)
        peak = peak_layer(curve) if pis else None
        out["prompts"].append({"prompt": prompt, "text_after_image": offset, "n_correct": len(pis),
                               "accuracy": len(pis) / max(len(items), 1), "drop": curve.tolist(), "peak_layer": peak,
                               "relative_depth": None if peak is None else relative_depth(peak, engine.n_layers),
                               "peak_stability": peak_stability(pis, peak) if pis else None})
    return out


def peak_stability(pis, peak: int, n_resamples: int = 1000, seed: int = 0) -> float:
    """The share of bootstrap resamples of the samples whose drop curve peaks at ``peak``: how firmly the
    samples place the peak there (1.0: every resample agrees)."""
    from hearlib.method.readsite import knockout_drop, peak_layer

    pis = np.asarray(pis, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(pis), size=(n_resamples, len(pis)))
    return float(np.mean([peak_layer(knockout_drop(pis[d])) == peak for d in draws]))


# ----------------------------------------------------------------------------- command line

def _print_probes(result: dict) -> None:
    for style, by_label in result["results"].items():
        for label, by_feature in by_label.items():
            cells = "  ".join(f"{f}: {v['linear']['accuracy']:.2f}/{v['mlp']['accuracy']:.2f}" for f, v in by_feature.items())
            chance = next(iter(by_feature.values()))["linear"]["chance"]
            print(f"{style:8s} {label:9s} (chance {chance:.2f}; linear/mlp)  {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hearlib.organism.diagnostics", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("probes", "colours", "text", "prompts"))
    parser.add_argument("--model", type=Path, help="an organism folder (probes, colours, prompts)")
    parser.add_argument("--scenes", type=Path, default=Path("data/scenes/heldout"), help="a 'hearlib scenes' folder")
    parser.add_argument("--n", type=int, default=300, help="scenes per style, or documents (text)")
    parser.add_argument("--style", default="clipart", help="colours: the style")
    parser.add_argument("--at", choices=("decoder", "projector"), default="decoder",
                        help="probes: the decoder's input (default) or the projector's (the tower's tokens)")
    parser.add_argument("--train", type=Path, default=Path("data/scenes/train"), help="text: the training scenes")
    parser.add_argument("--corpus", choices=TEXT_CORPORA, default="one-step",
                        help="text: the text-pretraining corpus (two-step: design D3, docs/ORGANISM.md); its text "
                             "stage is trained first when not finished (about 28 min on 2 cores)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    from hearlib.io import save_json

    if args.what == "probes":
        result = image_token_probes(args.model, args.scenes, args.n, at=args.at)
        _print_probes(result)
    elif args.what == "colours":
        result = colour_misses(args.model, args.scenes, args.style, args.n)
        print(json.dumps({k: v for k, v in result.items() if k != "misses"}, indent=1))
    elif args.what == "prompts":
        from hearlib.prompts import ALTERNATIVE_PROMPTS, PAPER_PROMPT

        result = prompt_knockout(args.model, args.scenes, (PAPER_PROMPT, *ALTERNATIVE_PROMPTS, *UNSEEN_PROMPTS), args.n)
        for row in result["prompts"]:
            print(f"{row['text_after_image']:3d} after the image  acc {row['accuracy']:.2f}  peak {row['peak_layer']} "
                  f"({row['peak_stability'] or 0:.2f})  "
                  + " ".join(f"{d:+.2f}" for d in row["drop"]) + f"  {row['prompt']}")
    else:
        from hearlib.organism.recipe import Recipe
        from hearlib.organism.staged import StagedTrainer

        trainer = StagedTrainer(args.train, "data/models", Recipe(text_corpus=args.corpus), heldout_dir=args.scenes,
                                progress=False)
        trainer.run(until="text")
        result = text_knockout(trainer, args.n)
        print(json.dumps(result, indent=1))
    save_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
