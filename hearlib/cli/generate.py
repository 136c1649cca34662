"""``hearlib generate``: generate an answer while a head set is ablated, scaled or kept alone
(:func:`hearlib.method.generation_hook.intervene`).

Nothing heavy is imported until the command runs, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hearlib.errors import UserError

GENERATE_DESCRIPTION = (
    "Generate (greedy) from one image and prompt while a head set is intervened on, at every text query "
    "(every position after the image, generated tokens included): 'ablate' is the paper's mean ablation "
    "of the set's image keys/values, 'keep-only' mean-ablates every head but the set, 'scale' multiplies "
    "the set's attention to the image by --scale and renormalises. Writes OUT/generation.json (text, tokens, "
    "settings, environment) and OUT/first_logits.npy (float32 [vocab]: the raw logits of the first "
    "generated token, at the last prompt position). With --mode ablate these equal the engine's literal "
    "ablation of the same heads. Beside them, the same generation without any intervention: generation.json's "
    "'intact' (text, tokens, token_strings, first_token) and OUT/first_logits_intact.npy, to compare with.")



def text_queries(family) -> str:
    """Which query positions an intervention reaches during generation, in words, for the settings."""
    if family.encoder_decoder:
        return ("every decoder position (the encoder and its prompt positions are not intervened on), "
                "generated tokens included")
    if family.cross_attention:
        return "every position (the prompt's prefix too: a cross-attention layer's queries), generated tokens included"
    return "every position after the last image token, generated tokens included"

def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate while a head set is ablated, scaled or kept alone",
                                   description=GENERATE_DESCRIPTION)
    parser.add_argument("--model", required=True, help="model folder, hub id or registry name")
    parser.add_argument("--image", required=True, type=Path, help="the image file")
    parser.add_argument("--prompt", default=None, help="task prompt (default: the paper's)")
    parser.add_argument("--heads", required=True,
                        help="the head set: a comma list of layer.head (e.g. 3.1,5.0) or a 'hearlib heads' JSON "
                             "file with --select")
    parser.add_argument("--select", default=None,
                        help="with a heads JSON: top-k:K (the K largest mean θ; default top-k:10, never empty), "
                             "x-star[:SHARE] (heads in x* in at least SHARE of the samples, default 0.5) or agnostic "
                             "(Fig. 10's sample-agnostic)")
    parser.add_argument("--mode", choices=("ablate", "scale", "keep-only"), default="ablate",
                        help="ablate the set (default), scale its image attention, or ablate every other head")
    parser.add_argument("--scale", type=float, default=None,
                        help="with --mode scale: the factor on the set's attention to the image (0 removes it)")
    parser.add_argument("--means", type=Path, default=None,
                        help="mean keys/values file from 'hearlib means' (same model and prompt); needed by "
                             "ablate and keep-only")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="tokens to generate (default 20)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    parser.add_argument("--allow-partial-load", action="store_true",
                        help="use a checkpoint whose weights do not all load (refused without it)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.set_defaults(func=run_generate)


def parse_head_list(spec: str) -> list[tuple[int, int]]:
    """``"3.1,5.0"`` -> ``[(3, 1), (5, 0)]``; UserError on anything else."""
    heads = []
    for part in spec.split(","):
        layer, dot, head = part.strip().partition(".")
        if not dot or not layer.isdigit() or not head.isdigit():
            raise UserError(f"--heads: {part.strip()!r} is not layer.head (e.g. 3.1); give a comma list or a "
                            "'hearlib heads' JSON file")
        heads.append((int(layer), int(head)))
    return heads


def head_spec(spec: str, select: str | None) -> tuple[list[tuple[int, int]], dict | None]:
    """The (layer, head) pairs ``--heads``/``--select`` name, and the heads document they came from."""
    from hearlib.records.heads import DEFAULT_SELECT, empty_selection_warning, read_heads, select_heads

    path = Path(spec)
    if spec.endswith(".json") or path.is_file():
        document = read_heads(path)
        if select is None:
            select = DEFAULT_SELECT
            print(f"--select not given: the heads file's {select} (the heads of largest mean θ)", file=sys.stderr)
        heads = select_heads(document, select)
        if not heads:
            raise UserError(empty_selection_warning(document, select, spec).removeprefix("warning: "))
        return heads, document
    if select is not None:
        raise UserError("--select applies to a heads JSON file, not to a list of heads")
    return parse_head_list(spec), None


def run_generate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hearlib.io import save_json, save_npy
    from hearlib.method.generation_hook import head_set
    from hearlib.method.loading import load_engine
    from hearlib.method.means import MeanKV

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be at least 1")
    if args.mode == "scale" and args.scale is None:
        raise UserError("--mode scale needs --scale F")
    if args.mode != "scale" and args.scale is not None:
        raise UserError(f"--scale applies to --mode scale, not {args.mode}")
    if args.mode != "scale" and args.means is None:
        raise UserError(f"--mode {args.mode} needs --means FILE (from 'hearlib means')")
    if not args.image.is_file():
        raise UserError(f"image not found: {args.image}")
    if args.means is not None and not args.means.is_file():
        raise UserError(f"means file not found: {args.means}")
    heads, document = head_spec(args.heads, args.select)

    engine = load_engine(args.model, device=args.device, allow_partial_load=args.allow_partial_load)
    if document is not None and (document["n_layers"], document["n_heads"]) != (engine.n_layers, engine.n_heads):
        raise UserError(f"{args.heads} is for a model of {document['n_layers']}×{document['n_heads']} heads "
                        f"({document.get('model_id')}); {engine.name} has {engine.n_layers}×{engine.n_heads}")
    head_set(engine, heads)                      # every head inside the model, before anything runs
    sample = engine.prepare(args.image, prompt=args.prompt)
    means = None if args.means is None else MeanKV.load(args.means, engine=engine, prompt=args.prompt)
    if means is not None:
        means.check(engine, sample)
    scale = 1.0 if args.scale is None else args.scale

    def generate():
        """(tokens, text, first-step raw logits float32 [vocab]) of greedy generation from the sample."""
        out = engine.model.generate(**sample.inputs, max_new_tokens=args.max_new_tokens, do_sample=False,
                                    num_beams=1, output_logits=True, return_dict_in_generate=True)
        tokens = out.sequences[0, sample.seq_len:].tolist()
        first = out.logits[0][0].float().cpu().numpy().astype(np.float32)
        return tokens, engine.tokenizer.decode(tokens, skip_special_tokens=True), first

    with torch.no_grad():
        intact_tokens, intact_text, intact_first = generate()            # the same, without any intervention
        with engine.intervene(heads, mode=args.mode, scale=scale, means=means):
            tokens, text, first = generate()
    save_npy(args.out / "first_logits.npy", first)
    save_npy(args.out / "first_logits_intact.npy", intact_first)
    save_json(args.out / "generation.json", {
        "text": text, "tokens": tokens, "token_strings": engine.tokenizer.convert_ids_to_tokens(tokens),
        "first_token": int(first.argmax()),
        "intact": {"text": intact_text, "tokens": intact_tokens,
                   "token_strings": engine.tokenizer.convert_ids_to_tokens(intact_tokens),
                   "first_token": int(intact_first.argmax()),
                   "note": "the same greedy generation without any intervention; first_logits_intact.npy"},
        "settings": {"model": engine.name, "image": str(args.image), "prompt": sample.prompt,
                     "mode": args.mode, "scale": args.scale, "heads": [list(pair) for pair in heads],
                     "heads_source": args.heads, "select": args.select,
                     "heads_model": None if document is None else document.get("model_id"),
                     "means": None if args.means is None else str(args.means),
                     "n_mean_images": None if means is None else means.n_images,
                     "max_new_tokens": args.max_new_tokens, "decoding": "greedy",
                     "text_queries": text_queries(engine.family)},
        "environment": engine.environment("literal"),
    })
    if document is not None and document.get("model_id") and Path(str(document.get("model", ""))).name \
            != Path(str(engine.name)).name:
        print(f"note: {args.heads} was made for {document.get('model')!r}, not {engine.name!r}", file=sys.stderr)
    print(f"wrote {args.out}: {args.mode} of {len(heads)} heads, {len(tokens)} tokens: {text!r} "
          f"(without intervention: {intact_text!r})")
    return 0
