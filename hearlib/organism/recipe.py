"""The staged recipe: an organism raised the way real LVLMs are (issue 16, docs/ORGANISM.md).

Four stages (and an optional fifth), each a function of this trainer, each resumable (a
checkpoint per stage under ``OUT/<name>.stages/<stage>/``; a rerun skips finished stages and
resumes an interrupted one from its last checkpoint, bit for bit: every batch is drawn from
``(seed, stage, step)``), timed, with its own held-out check recorded in
``OUT/<name>/training_stages.json``:

1. ``text``: the Llama decoder pretrained as a language model on a text corpus generated from
   the scene world (descriptions of scenes, and questions about a described scene answered
   from the description, so that the answer has to be found in context). Check: held-out
   perplexity (and in-context answer accuracy).
2. ``contrastive``: the CLIP vision tower trained against captions with CLIP's symmetric
   InfoNCE (``CLIPModel(return_loss=True)``, a small CLIP text tower). Check: held-out
   image->caption retrieval accuracy.
3. ``align``: projector alignment by captioning, tower and decoder frozen (LLaVA stage 1).
   Check: held-out captioning loss (mean NLL per caption token).
4. ``instruct``: instruction tuning on the question mix of the fast recipe, projector and
   decoder trained, tower frozen (LLaVA stage 2). Check: held-out answer accuracy per
   question type and style.
5. ``tune`` (only when ``Recipe.tune_steps`` > 0): instruction tuning continued with the tower
   unfrozen too, every weight trained at a lower rate, as Qwen2-VL, InternVL and
   LLaVA-OneVision end (LLaVA-1.5 keeps the tower frozen and stops after stage 4). Check: held-out
   answer accuracy, as stage 4. Stages 1-4 are then taken from the finished four-stage organism
   when it was trained with the same settings (its weights are their result).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hearlib import io
from hearlib.errors import UserError
from hearlib.organism import model as O
from hearlib.organism import scenes
from hearlib.organism import train as T

STAGES = ("text", "contrastive", "align", "instruct", "tune")
# what each stage's result depends on: a finished stage of the full recipe can be reused by a run
# with an ingredient removed when none of these was removed (its inputs are then identical)
DEPENDS = {"text": (), "contrastive": (), "align": ("text", "contrastive"),
           "instruct": ("text", "contrastive", "align"), "tune": ("text", "contrastive", "align")}
# the Recipe fields of each stage (a stage's result does not depend on the fields of later stages)
STAGE_FIELDS = {"text": "text_", "contrastive": "clip_", "align": "align_", "instruct": "instruct_",
                "tune": "tune_"}
# the ingredient study (docs/ORGANISM.md): each can be removed from the recipe on its own
INGREDIENTS = {"text": "no text pretraining (the decoder starts from random weights)",
               "contrastive": "per-patch tower (the fast recipe's tower, supervised with the main object's class "
                              "per patch) instead of the contrastive one",
               "align": "no projector alignment (the projector starts from random weights in instruction tuning)"}
CAPTION_PROMPT = "Describe the image briefly."
STYLE_PHRASE = {"real": "a photo of", "sketch": "a sketch of", "clipart": "a clipart of"}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
         "centre": "in the centre"}
DESCRIPTION_WORDS = ["a", "an", "the", "of", "on", "at", "in", "with", "and", "background", "photo",
                     "sketch", "clipart", "there", "is", "(", ")", ",", ".", "Describe", "image", "briefly",
                     "left", "right", "top", "bottom", "centre"] + list(scenes.TEXTURES)


def ingredients(names) -> tuple:
    """``names`` as a tuple, each one of :data:`INGREDIENTS` (a UserError naming the choices otherwise)."""
    names = tuple(names)
    bad = [w for w in names if w not in INGREDIENTS]
    if bad:
        raise UserError(f"cannot remove {', '.join(bad)}: the ingredients are {', '.join(INGREDIENTS)}")
    return names


@dataclass
class Recipe:
    """Hyper-parameters of the staged recipe (the defaults are the documented recipe)."""
    size: str = "hear-organism-r8"
    text_docs: int = 40000          # training documents from seed-0 scenes (held-out: seed 1)
    text_steps: int = 3000
    text_batch: int = 32
    text_lr: float = 1e-3
    clip_steps: int = 4000
    clip_batch: int = 128
    clip_lr: float = 1e-3
    clip_text_layers: int = 2
    align_steps: int = 600
    align_batch: int = 32
    align_lr: float = 1e-3
    instruct_steps: int = 1500
    instruct_batch: int = 48
    instruct_lr: float = 3e-4
    tune_steps: int = 0             # stage 5, tower unfrozen (0: no stage 5, the tower stays frozen as in LLaVA-1.5)
    tune_batch: int = 48
    tune_lr: float = 1e-4
    feature_layer: int = -2         # the tower layer the projector reads (LLaVA-1.5: -2)
    without: tuple = ()             # ingredients removed (INGREDIENTS), for the ingredient study
    tower_from: str = "data/models/hear-organism-s"   # the per-patch tower, when "contrastive" is removed
    heldout_images: int = 300       # per check (images of the held-out folder)
    save_every: int = 200
    stage_steps: dict = field(default_factory=dict)   # overrides, e.g. {"text": 20}

    def __post_init__(self):
        self.without = ingredients(self.without)
        if self.tune_steps < 0:
            raise UserError(f"tune_steps {self.tune_steps}: expected 0 (no stage 5) or a number of steps")

    def name(self, size_name: str) -> str:
        """The organism's folder name: the size, what was removed (``hear-organism-r8-no-text``),
        and ``-tuned`` with stage 5."""
        return (size_name + "".join(f"-no-{w}" for w in STAGES if w in self.without)
                + ("-tuned" if self.tune_steps > 0 else ""))

    @property
    def stages(self) -> tuple:
        """The stages this recipe runs (stage 5 only with ``tune_steps`` > 0), removed ones included."""
        return STAGES if self.tune_steps > 0 else STAGES[:-1]

    def settings_through(self, stage: str) -> dict:
        """The settings that ``stage``'s result depends on: every field but those of later stages
        (and the ingredient bookkeeping, which :meth:`same_stage` reads on its own)."""
        later = STAGES[STAGES.index(stage) + 1:]
        out = {k: v for k, v in asdict(self).items() if k not in {"without", "tower_from", "stage_steps"}
               and not any(k.startswith(STAGE_FIELDS[s]) for s in later)}
        return {**out, "stage_steps": {s: n for s, n in self.stage_steps.items() if s not in later}}

    def same_stage(self, other: "Recipe", stage: str) -> bool:
        """Whether ``stage`` of ``other`` computed exactly what this recipe's would (same settings
        up to that stage, nothing it depends on removed in either), so that its result can be reused."""
        removed = set(self.without) | set(other.without)
        return (self.settings_through(stage) == other.settings_through(stage) and stage not in removed
                and not removed & set(DEPENDS[stage]))

    @classmethod
    def from_json(cls, saved: dict) -> "Recipe":
        """A recipe as ``recipe.json`` or ``training_stages.json`` stores it (fields this version
        does not know are dropped: older runs wrote fewer, never other meanings)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def steps(self, stage: str) -> int:
        key = {"text": "text_steps", "contrastive": "clip_steps", "align": "align_steps",
               "instruct": "instruct_steps", "tune": "tune_steps"}[stage]
        return int(self.stage_steps.get(stage, getattr(self, key)))


# --------------------------------------------------------------------------- text
def _color_name(rgb) -> str:
    return min(scenes.COLORS, key=lambda c: sum((a - b) ** 2 for a, b in zip(scenes.COLORS[c], rgb)))


def describe(scene: scenes.Scene, style: str | None = None, rng: np.random.Generator | None = None) -> str:
    """A caption of ``scene``: its main object (colour, kind, place), distractors and background.
    ``rng`` varies the word order (the main object first or after the distractors); none: canonical."""
    main = f"a {scene.color} {scene.category} ( {scene.supercategory} ) {WHERE[scene.position]}"
    others = [f"a {_color_name(d.color)} {d.category}" for d in scene.distractors]
    rest = " and ".join(others)
    lead = f"{STYLE_PHRASE[style]} " if style else ""
    bg = f"on a {scene.texture} background"
    if rng is not None and others and rng.integers(2):
        return f"{lead}{rest} , and {main} , {bg} ."
    return f"{lead}{main} , with {rest} , {bg} ." if others else f"{lead}{main} , {bg} ."


def document(scene: scenes.Scene, rng: np.random.Generator) -> tuple[str, str | None]:
    """One text-pretraining document: a description, or (2 in 3) a question about a described
    scene in the chat format, answered from the description. Returns (text, answer or None)."""
    style = scenes.STYLES[rng.integers(len(scenes.STYLES))] if rng.integers(2) else None
    desc = describe(scene, style, rng)
    if rng.integers(3) == 0:
        return desc, None
    q = list(O.QUESTIONS)[rng.integers(len(O.QUESTIONS))]
    prompts, key = O.QUESTIONS[q]
    prompt = prompts[rng.integers(len(prompts))]
    answer = scene.labels()[key]
    return f"USER: {desc}\n{prompt} ASSISTANT: {answer}", answer


def corpus(seed: int, n: int, offset: int = 0) -> list[tuple[str, str | None]]:
    """``n`` documents of scenes ``offset..offset+n`` of ``seed`` (deterministic)."""
    out = []
    for i in range(offset, offset + n):
        out.append(document(scenes.make_scene(seed, i), np.random.default_rng([seed, i, 7])))
    return out


# --------------------------------------------------------------------------- checks
def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp of the mean negative log-likelihood per token."""
    return float(math.exp(nll_sum / max(1, n_tokens)))


def retrieval_accuracy(sim: torch.Tensor, captions: list[str]) -> float:
    """Image->caption retrieval: share of rows whose best caption (column argmax) has the same
    text as the row's own caption (``captions[i]`` belongs to image ``i``; identical captions count)."""
    best = sim.argmax(1).tolist()
    return float(np.mean([captions[j] == captions[i] for i, j in enumerate(best)]))


# --------------------------------------------------------------------------- checkpoints
class Checkpoint:
    """A stage's checkpoint folder: ``state.safetensors`` (module weights and AdamW moments),
    ``progress.json`` (steps done) and, once finished, ``done.json`` (the stage's record)."""

    def __init__(self, folder: Path):
        self.dir = Path(folder)

    def record(self) -> dict | None:
        f = self.dir / "done.json"
        return json.loads(f.read_text()) if f.exists() else None

    def _tensors(self, modules, opt):
        out = {f"m.{name}.{k}": v.detach().contiguous().clone() for name, m in modules.items()
               for k, v in m.state_dict().items()}
        if opt is not None:
            for i, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    out[f"o.{i}.{k}"] = torch.as_tensor(v).clone()
        return out

    def save(self, step: int, modules: dict, opt=None) -> None:
        from safetensors.torch import save_file
        self.dir.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(self.dir / "state.safetensors") as tmp:
            save_file(self._tensors(modules, opt), str(tmp))
        io.save_json(self.dir / "progress.json", {"step": step})

    def load(self, modules: dict, opt=None) -> int:
        """Restore weights (and optimizer moments); return the steps done (0 if no checkpoint)."""
        from safetensors.torch import load_file
        f = self.dir / "state.safetensors"
        if not f.exists():
            return 0
        t = load_file(str(f))
        for name, m in modules.items():
            pre = f"m.{name}."
            m.load_state_dict({k[len(pre):]: v for k, v in t.items() if k.startswith(pre)})
        if opt is not None and any(k.startswith("o.") for k in t):
            sd = opt.state_dict()
            state = {}
            for k, v in t.items():
                if k.startswith("o."):
                    _, i, name = k.split(".", 2)
                    state.setdefault(int(i), {})[name] = v
            sd["state"] = state
            opt.load_state_dict(sd)
        return int(json.loads((self.dir / "progress.json").read_text())["step"])

    def finish(self, modules: dict, record: dict) -> None:
        self.save(record["steps"], modules)
        io.save_json(self.dir / "done.json", record)


class Interrupted(Exception):
    """Raised by a stage stopped on purpose (``stop_after``) after writing its checkpoint."""


def _loop(ck: Checkpoint, modules: dict, params: list, steps: int, lr: float, wd: float, step_fn,
          desc: str, save_every: int, progress: bool, stop_after: int | None = None) -> list[float]:
    """AdamW, 5% warmup + cosine, clipping 1.0; ``step_fn(step)`` returns the loss of that step."""
    from tqdm import tqdm
    opt = T._optimizer(params, lr, wd)
    start = ck.load(modules, opt)
    losses = []
    bar = tqdm(range(start, steps), desc=desc, disable=not progress, initial=start, total=steps)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = T._lr(step, steps, lr, max(1, steps // 20))
        loss = step_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if (step + 1) % save_every == 0 or step + 1 == steps:
            ck.save(step + 1, modules, opt)
        if stop_after is not None and step + 1 >= stop_after and step + 1 < steps:
            ck.save(step + 1, modules, opt)
            raise Interrupted(f"{desc} stopped after {step + 1} steps")
    return losses


def _pooled(out) -> torch.Tensor:
    """CLIP's projected embedding (transformers 5 wraps it in an output object)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    T_ = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T_), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), T_), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    return ids, mask


# --------------------------------------------------------------------------- the trainer
class StagedTrainer:
    """Runs the four stages (five with ``tune_steps`` > 0) on a generated scenes folder
    (``hearlib scenes``) into ``out``."""

    def __init__(self, data_dir, out_dir, recipe: Recipe | None = None, heldout_dir=None, seed: int = 0,
                 progress: bool = True, limit: int | None = None, reuse_from=None):
        self.recipe = recipe or Recipe()
        self.seed, self.progress = seed, progress
        self.size = O.resolve_size(self.recipe.size)
        self.name = self.recipe.name(self.size.name)
        self.out = Path(out_dir)
        self.dest = self.out / self.name
        self.stage_dir = self.out / f"{self.name}.stages"
        # finished stages of another run (by default the full recipe's, beside this one) are
        # copied where they computed exactly what this run's would (Recipe.same_stage)
        base = Path(reuse_from) if reuse_from else self.out / f"{self.size.name}.stages"
        self.reuse_from = base if base.resolve() != self.stage_dir.resolve() else None
        train, held, questions, vocab = T._prepare(Path(data_dir), Path(heldout_dir) if heldout_dir else None,
                                                   seed, 0.1, limit, progress)
        if questions != ["object", "color", "position", "kind"] or not all("scene_id" in r.extra for r in train):
            raise UserError(f"the staged recipe needs a folder made by 'hearlib scenes' (with labels.json); "
                            f"{data_dir} is not one")
        self.train_records, self.held_records = train, held[:self.recipe.heldout_images * len(scenes.STYLES)]
        self.questions, self.vocab = questions, vocab
        words = sorted(set(w for v in vocab.values() for w in v) | set(DESCRIPTION_WORDS))
        self.tok = O.build_tokenizer(words)
        self.processor = O.build_processor(self.tok)
        self.feature_layer = self.recipe.feature_layer
        tower = None
        if "contrastive" in self.recipe.without:
            tower, self.feature_layer = self._tower_of(self.recipe.tower_from, "the per-patch tower",
                                                       "make model-fast, or give Recipe.tower_from")
        self.model = O.build_model(self.size, self.tok, seed, feature_layer=self.feature_layer)
        self.vt, self.proj, self.lm, self.head, self.embed = O.parts(self.model)
        if tower is not None:
            self.vt.load_state_dict(tower.state_dict())
        self._data = {}
        self.records = {}

    @staticmethod
    def _tower_of(folder, what: str, remedy: str):
        """(vision tower, the tower layer its projector reads) of a finished organism."""
        from transformers import AutoModelForImageTextToText
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise UserError(f"{what} comes from a finished organism: {folder} has no config.json ({remedy})")
        src = AutoModelForImageTextToText.from_pretrained(folder)
        return src.model.vision_tower, int(src.config.vision_feature_layer)

    # ---- helpers
    def _images(self, which: str) -> T.Data:
        if which not in self._data:
            recs = self.train_records if which == "train" else self.held_records
            self._data[which] = T.Data(recs, T.load_images(recs, self.progress), self.questions)
        return self._data[which]

    def _features(self, which: str) -> torch.Tensor:
        key = f"feats-{which}"
        if key not in self._data:
            self._data[key] = T.compute_features(self.vt, self._images(which).images,
                                                        layer=self.feature_layer)
        return self._data[key]

    def _scene(self, r):
        return scenes.make_scene(r.extra["seed"], r.extra["scene_id"])

    def _ids(self, text: str, eos: bool = True) -> list[int]:
        ids = self.tok(text)["input_ids"]
        if self.tok.unk_token_id in ids:
            raise UserError(f"text {text!r} has words outside the organism's vocabulary")
        return ids + ([self.tok.eos_token_id] if eos else [])

    def _decoder_logits(self, ids, mask, image_feats=None):
        emb = self.embed(ids)
        if image_feats is not None:
            img = self.proj(image_feats)
            sel = (ids == self.model.config.image_token_id).unsqueeze(-1).expand_as(emb)
            emb = emb.masked_scatter(sel, img.reshape(-1, img.shape[-1]).to(emb.dtype))
        return self.head(self.lm(inputs_embeds=emb, attention_mask=mask).last_hidden_state)

    def _run(self, stage: str, fn, stop_after=None) -> dict:
        ck = Checkpoint(self.stage_dir / stage)
        if ck.record() is None:
            self._reuse(stage, ck)
        done = ck.record()
        modules = self._modules(stage)
        if done is not None:
            ck.load(modules)
            print(f"stage {stage}: finished before ({done['seconds'] / 60:.1f} min), skipped; "
                  f"check {json.dumps(done['check'])}", flush=True)
            self.records[stage] = done
            return done
        t0, c0 = time.time(), time.process_time()
        prior = json.loads((ck.dir / "seconds.json").read_text())["seconds"] if (ck.dir / "seconds.json").exists() else 0.0
        try:
            steps, hyper, check = fn(ck, modules, stop_after)
        except BaseException:          # interrupted (on purpose or not): keep the time spent so far
            ck.dir.mkdir(parents=True, exist_ok=True)
            io.save_json(ck.dir / "seconds.json", {"seconds": prior + time.time() - t0})
            raise
        rec = {"stage": stage, "steps": steps, "hyper": hyper, "check": check,
               "seconds": prior + time.time() - t0, "cpu_seconds_this_run": time.process_time() - c0}
        ck.finish(modules, rec)
        print(f"stage {stage}: {steps} steps in {rec['seconds'] / 60:.1f} min "
              f"({rec['cpu_seconds_this_run']:.0f} CPU s); held-out check "
              f"{json.dumps(check)}", flush=True)
        self.records[stage] = rec
        return rec

    def _reuse(self, stage: str, ck: Checkpoint) -> None:
        if self.reuse_from is None:
            return
        other = self.reuse_from / stage
        recipe_file = self.reuse_from / "recipe.json"
        if not (other / "done.json").is_file() or not recipe_file.is_file():
            if stage == "contrastive":
                self._reuse_tower(ck)
            return
        if not self._same_stage_as(json.loads(recipe_file.read_text()), stage):
            return
        import shutil
        ck.dir.mkdir(parents=True, exist_ok=True)
        for name in ("state.safetensors", "progress.json", "seconds.json", "done.json"):   # done.json last
            if (other / name).is_file():
                shutil.copy2(other / name, ck.dir / name)
        print(f"stage {stage}: reused from {other} (same settings, nothing it depends on removed)", flush=True)

    def _reuse_tower(self, ck: Checkpoint) -> None:
        """The contrastive stage from the full recipe's finished organism when its stage checkpoints
        are gone (a fresh clone holds the committed model only): stages 3 and 4 keep the tower
        frozen, so the saved tower is the stage's result bit for bit. CLIP's text tower is not kept
        in a finished model and is only used inside this stage, so it is left at its start."""
        folder = self.out / self.size.name
        summary = self._finished_summary(folder, "contrastive")
        if summary is None:
            return
        tower, _ = self._tower_of(folder, "the contrastive tower", "make model-staged")
        self.vt.load_state_dict(tower.state_dict())
        record = {**next(s for s in summary["stages"] if s["stage"] == "contrastive"),
                  "reused_from": str(folder), "kept": "the vision tower (CLIP's text tower is not saved in a model)"}
        ck.finish({"clip": self._clip()}, record)
        print(f"stage contrastive: reused the tower of the finished {folder} (frozen after this stage; "
              f"same settings)", flush=True)

    def _finished_summary(self, folder: Path, stage: str) -> dict | None:
        """``training_stages.json`` of the finished organism in ``folder`` when it computed ``stage``
        as this run would (None otherwise, or when there is none)."""
        summary_file = folder / "training_stages.json"
        if not summary_file.is_file():
            return None
        summary = json.loads(summary_file.read_text())
        same = self._same_stage_as({**summary.get("recipe", {}), "seed": summary.get("seed")}, stage)
        return summary if same else None

    def _same_stage_as(self, theirs: dict, stage: str) -> bool:
        """Whether another run (its recipe's fields and ``seed``) computed ``stage`` as this one would."""
        theirs = dict(theirs)
        return theirs.pop("seed", None) == self.seed and self.recipe.same_stage(Recipe.from_json(theirs), stage)

    def _refuse_other_settings(self) -> None:
        """A stage checkpoint left by a run with other settings (another ``--tune-steps``, a
        ``--stage-steps`` timing run, another seed) would be resumed or skipped as if it were this
        run's: refuse, naming the folder to delete."""
        saved = self.stage_dir / "recipe.json"
        if not saved.is_file():
            return
        theirs = json.loads(saved.read_text())
        seed, theirs = theirs.pop("seed", None), Recipe.from_json(theirs)
        for stage in STAGES:
            if not (self.stage_dir / stage).is_dir():
                continue
            mine, old = self.recipe.settings_through(stage), theirs.settings_through(stage)
            if seed != self.seed or mine != old:
                diff = [f"{k}: {old.get(k)!r} there, {mine.get(k)!r} now" for k in sorted(set(mine) | set(old))
                        if mine.get(k) != old.get(k)]
                diff += [f"seed: {seed} there, {self.seed} now"] if seed != self.seed else []
                raise UserError(f"{self.stage_dir / stage} holds stage {stage!r} of a run with other settings "
                                f"({'; '.join(diff)}); delete that folder (and the later stages' beside it) "
                                f"to train it with these")

    def _removed(self, stage: str) -> dict:
        what = INGREDIENTS[stage]
        print(f"stage {stage}: removed ({what})", flush=True)
        rec = {"stage": stage, "removed": what, "steps": 0, "seconds": 0.0, "check": None}
        if stage == "contrastive":
            rec["tower_from"] = str(self.recipe.tower_from)
            rec["feature_layer"] = self.feature_layer
        self.records[stage] = rec
        return rec

    def _modules(self, stage):
        if stage == "text":
            return {"lm": self.lm, "head": self.head}
        if stage == "contrastive":
            return {"clip": self._clip()}
        if stage == "align":
            return {"proj": self.proj}
        if stage == "tune":
            return {"vt": self.vt, "proj": self.proj, "lm": self.lm, "head": self.head}
        return {"proj": self.proj, "lm": self.lm, "head": self.head}

    def _clip(self):
        if "clip" not in self._data:
            from transformers import CLIPConfig, CLIPModel, CLIPTextConfig
            v = self.vt.config
            text = CLIPTextConfig(vocab_size=len(self.tok), hidden_size=v.hidden_size,
                                  intermediate_size=v.intermediate_size,
                                  num_hidden_layers=self.recipe.clip_text_layers,
                                  num_attention_heads=v.num_attention_heads, max_position_embeddings=64,
                                  hidden_act="quick_gelu", pad_token_id=self.tok.pad_token_id,
                                  bos_token_id=self.tok.bos_token_id, eos_token_id=self.tok.eos_token_id)
            cfg = CLIPConfig(text_config=text.to_dict(), vision_config=v.to_dict(), projection_dim=v.hidden_size)
            torch.manual_seed(self.seed + 11)
            clip = CLIPModel(cfg)
            clip.vision_model = self.vt          # the organism's tower itself is trained
            self._data["clip"] = clip
        return self._data["clip"]

    # ---- stage 1: text pretraining
    def stage_text(self, ck, modules, stop_after):
        r = self.recipe
        steps = r.steps("text")
        docs = corpus(scenes.TRAIN_SEED, r.text_docs)
        held = corpus(scenes.HELDOUT_SEED, r.heldout_images)
        pad = self.tok.pad_token_id
        params = [p for m in modules.values() for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)

        def step_fn(step):
            rng = np.random.default_rng([self.seed, 1, step])
            batch = [self._ids(docs[i][0]) for i in rng.integers(len(docs), size=r.text_batch)]
            ids, mask = _pad(batch, pad)
            logits = self._decoder_logits(ids[:, :-1], mask[:, :-1])
            tgt = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)

        self.model.train()
        _loop(ck, modules, params, steps, r.text_lr, 0.01, step_fn, "stage 1: text pretraining",
              r.save_every, self.progress, stop_after)
        self.model.eval()
        return steps, {"batch": r.text_batch, "lr": r.text_lr, "docs": r.text_docs}, self.check_text(held)

    @torch.no_grad()
    def check_text(self, held) -> dict:
        nll, n, ok, qa = 0.0, 0, 0, 0
        for s in range(0, len(held), 64):
            chunk = held[s:s + 64]
            ids, mask = _pad([self._ids(t) for t, _ in chunk], self.tok.pad_token_id)
            logits = self._decoder_logits(ids[:, :-1], mask[:, :-1])
            tgt = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            nll += F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction="sum").item()
            n += int((tgt != -100).sum())
            for b, (t, a) in enumerate(chunk):
                if a is None:
                    continue
                k = int(mask[b].sum()) - 3                  # logits at the final ':' predict the answer
                qa += 1
                ok += int(self.tok.convert_ids_to_tokens(int(logits[b, k].argmax())) == a)
        return {"perplexity": perplexity(nll, n), "tokens": n, "context_answer_accuracy": ok / max(1, qa),
                "context_questions": qa}

    # ---- stage 2: contrastive tower
    def _captions(self, records, rng=None):
        return [describe(self._scene(r), r.domain, rng) for r in records]

    def stage_contrastive(self, ck, modules, stop_after):
        r = self.recipe
        steps = r.steps("contrastive")
        clip = modules["clip"]
        data = self._images("train")
        params = list(clip.parameters())
        for p in params:
            p.requires_grad_(True)
        n = len(data.records)

        def step_fn(step):
            rng = np.random.default_rng([self.seed, 2, step])
            idx = rng.choice(n, size=min(r.clip_batch, n), replace=False)
            caps = self._captions([data.records[i] for i in idx], rng)
            ids, mask = _pad([self._ids(c) for c in caps], self.tok.pad_token_id)
            out = clip(input_ids=ids, attention_mask=mask, pixel_values=T.normalize(data.images[torch.from_numpy(idx)]),
                       return_loss=True)
            return out.loss

        clip.train()
        _loop(ck, modules, params, steps, r.clip_lr, 0.05, step_fn, "stage 2: contrastive tower",
              r.save_every, self.progress, stop_after)
        clip.eval()
        self.vt.eval()
        return steps, {"batch": r.clip_batch, "lr": r.clip_lr, "text_layers": r.clip_text_layers}, \
            self.check_contrastive(clip)

    @torch.no_grad()
    def check_contrastive(self, clip) -> dict:
        held = self._images("held")
        caps = self._captions(held.records)
        ids, mask = _pad([self._ids(c) for c in caps], self.tok.pad_token_id)
        img = torch.cat([_pooled(clip.get_image_features(pixel_values=T.normalize(held.images[s:s + 256])))
                         for s in range(0, len(caps), 256)])
        txt = _pooled(clip.get_text_features(input_ids=ids, attention_mask=mask))
        sim = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
        out = {"retrieval_accuracy": retrieval_accuracy(sim, caps), "images": len(caps),
               "chance": float(np.mean([np.mean([c == d for d in caps]) for c in caps]))}
        for style in sorted(set(held.domains)):
            rows = [i for i, d in enumerate(held.domains) if d == style]
            best = sim[rows].argmax(1).tolist()
            out[f"retrieval_accuracy/{style}"] = float(np.mean([caps[j] == caps[i] for i, j in zip(rows, best)]))
        return out

    # ---- stage 3: projector alignment (captioning)
    def _caption_batch(self, records, rng=None):
        seqs, lens = [], []
        for c in self._captions(records, rng):
            prompt = self._ids(O.prompt_text(CAPTION_PROMPT), eos=False)
            k = prompt.index(self.model.config.image_token_id)
            prompt = prompt[:k] + [prompt[k]] * O.NUM_IMAGE_TOKENS + prompt[k + 1:]
            seqs.append(prompt + self._ids(c)[1:])
            lens.append(len(prompt))
        ids, mask = _pad(seqs, self.tok.pad_token_id)
        tgt = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        for b, L in enumerate(lens):
            tgt[b, :L - 1] = -100                                  # loss on the caption and </s> only
        return ids[:, :-1], mask[:, :-1], tgt

    def stage_align(self, ck, modules, stop_after):
        r = self.recipe
        steps = r.steps("align")
        feats = self._features("train")
        data = self._images("train")
        params = self._train_only(modules)
        n = len(data.records)

        def step_fn(step):
            rng = np.random.default_rng([self.seed, 3, step])
            idx = rng.integers(n, size=r.align_batch)
            ids, mask, tgt = self._caption_batch([data.records[i] for i in idx], rng)
            logits = self._decoder_logits(ids, mask, feats[torch.from_numpy(idx)])
            return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)

        self.model.eval()          # frozen parts stay in eval mode; no dropout anywhere
        _loop(ck, modules, params, steps, r.align_lr, 0.0, step_fn, "stage 3: projector alignment",
              r.save_every, self.progress, stop_after)
        return steps, {"batch": r.align_batch, "lr": r.align_lr, "prompt": CAPTION_PROMPT}, self.check_align()

    @torch.no_grad()
    def check_align(self) -> dict:
        held = self._images("held")
        feats = self._features("held")
        nll, n = 0.0, 0
        for s in range(0, len(held.records), 64):
            ids, mask, tgt = self._caption_batch(held.records[s:s + 64])
            logits = self._decoder_logits(ids, mask, feats[s:s + 64])
            nll += F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction="sum").item()
            n += int((tgt != -100).sum())
        return {"caption_loss": nll / max(1, n), "caption_tokens": n}

    # ---- stage 4: instruction tuning
    def _answer_batches(self, data: T.Data, stage_key: int, batch: int):
        """``step -> (image indices, loss given those images' tower features)``: a batch of
        questions drawn from ``(seed, stage_key, step)``; the loss is on the answer word (and,
        weighted 0.2, on the ``</s>`` after it)."""
        prompts = T.Prompts(self.tok, data.questions)
        qw = T._question_weights(data.questions)
        ans = {q: [T.answer_id(self.tok, v) if v is not None else None for v in data.labels[q]]
               for q in data.questions}
        eos, n = self.tok.eos_token_id, len(data.records)

        def at(step):
            rng = np.random.default_rng([self.seed, stage_key, step])
            seqs, img_idx, lens = [], [], []
            while len(seqs) < batch:
                i = int(rng.integers(n))
                q = data.questions[rng.choice(len(qw), p=qw)]
                if ans[q][i] is None:
                    continue
                ids = prompts.items[prompts.by_question[q][rng.integers(len(prompts.by_question[q]))]][2]
                seqs.append(ids + [ans[q][i], eos])
                img_idx.append(i)
                lens.append(len(ids))
            ids, mask = _pad([s[:-1] for s in seqs], self.tok.pad_token_id)

            def loss(image_feats):
                logits = self._decoder_logits(ids, mask, image_feats)
                b = torch.arange(len(seqs))
                L = torch.tensor(lens)
                tgt_a = torch.tensor([s[-2] for s in seqs])
                return (F.cross_entropy(logits[b, L - 1], tgt_a)
                        + 0.2 * F.cross_entropy(logits[b, L], torch.full_like(tgt_a, eos)))
            return torch.tensor(img_idx), loss
        return at

    def _answer_check(self) -> dict:
        self.model.eval()
        acc = T.evaluate(self.model, self.tok, self._images("held"), alt_subset=150, progress=self.progress)
        print(T.format_table(self.name, acc), flush=True)
        return {"answer_accuracy": {f"{q}/{d}": a for (q, d), a in sorted(acc.items())}}

    def _train_only(self, modules: dict) -> list:
        for p in self.model.parameters():
            p.requires_grad_(False)
        params = [p for m in modules.values() for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params

    def stage_instruct(self, ck, modules, stop_after):
        r = self.recipe
        steps = r.steps("instruct")
        feats = self._features("train")
        params = self._train_only(modules)
        batches = self._answer_batches(self._images("train"), 4, r.instruct_batch)

        def step_fn(step):
            idx, loss = batches(step)
            return loss(feats[idx])

        self.model.train()
        _loop(ck, modules, params, steps, r.instruct_lr, 0.01, step_fn, "stage 4: instruction tuning",
              r.save_every, self.progress, stop_after)
        return steps, {"batch": r.instruct_batch, "lr": r.instruct_lr}, self._answer_check()

    # ---- stage 5: tuning with the tower unfrozen
    def stage_tune(self, ck, modules, stop_after):
        r = self.recipe
        steps = r.steps("tune")
        images = self._images("train").images
        params = self._train_only(modules)
        batches = self._answer_batches(self._images("train"), 5, r.tune_batch)

        def step_fn(step):
            idx, loss = batches(step)
            return loss(O.image_features(self.vt, T.normalize(images[idx]), self.feature_layer))

        self.model.train()
        _loop(ck, modules, params, steps, r.tune_lr, 0.01, step_fn, "stage 5: tuning, tower unfrozen",
              r.save_every, self.progress, stop_after)
        return steps, {"batch": r.tune_batch, "lr": r.tune_lr, "trained": "tower, projector, decoder"}, \
            self._answer_check()

    def _reuse_finished(self) -> bool:
        """Stages 1-4 from the finished four-stage organism (``OUT/<name without -tuned>``) when
        it was trained with this recipe's settings up to stage 4: its weights are their result."""
        if (self.stage_dir / "instruct" / "done.json").is_file():
            return False
        folder = self.out / replace(self.recipe, tune_steps=0).name(self.size.name)
        summary = self._finished_summary(folder, "instruct")
        if summary is None:
            return False
        from transformers import AutoModelForImageTextToText
        self.model.load_state_dict(AutoModelForImageTextToText.from_pretrained(folder).state_dict())
        for rec in summary["stages"]:
            self.records[rec["stage"]] = {**rec, "reused_from": str(folder)}
        print(f"stages 1-4: the finished {folder} (same settings up to stage 4)", flush=True)
        return True

    # ---- all
    def run(self, stop_after: dict | None = None, until: str | None = None) -> dict:
        """Every stage in order (finished ones skipped), then the model saved to ``OUT/<name>``.
        ``stop_after={stage: k}`` interrupts a stage after k steps (tests); ``until`` stops after
        that stage without saving the model (returns the stage records so far)."""
        stop_after = stop_after or {}
        t0 = time.time()
        self._refuse_other_settings()
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        io.save_json(self.stage_dir / "recipe.json", {**asdict(self.recipe), "without": list(self.recipe.without),
                                                      "seed": self.seed})
        stages = self.recipe.stages
        if "tune" in stages:
            self._reuse_finished()
        for stage in stages:
            if stage in self.records:               # taken from the finished four-stage organism
                pass
            elif stage in self.recipe.without:
                self._removed(stage)
            else:
                self._run(stage, getattr(self, f"stage_{stage}"), stop_after.get(stage))
            if stage == until:
                return {"stages": [self.records[s] for s in stages if s in self.records]}
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.dest.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(self.dest)
        self.processor.save_pretrained(self.dest)
        summary = {"name": self.name, "seed": self.seed, "recipe": asdict(self.recipe),
                   "without": {w: INGREDIENTS[w] for w in self.recipe.without}, "feature_layer": self.feature_layer,
                   "layers": self.size.layers, "heads": self.size.heads, "hidden": self.size.hidden,
                   "train_images": len(self.train_records), "heldout_images": len(self.held_records),
                   "stages": [self.records[s] for s in stages],
                   "total_seconds": sum(self.records[s]["seconds"] for s in stages),
                   "this_run_seconds": time.time() - t0}
        io.save_json(self.dest / "training_stages.json", summary)
        acc = self.records[stages[-1]]["check"]["answer_accuracy"]
        io.save_json(self.dest / "hearlib_training.json",
                     {"name": self.name, "seed": self.seed, "recipe": "staged", "questions": self.questions,
                      "answers": self.vocab, "heldout_accuracy": acc})
        return summary


def train_staged(data_dir, out_dir, recipe: Recipe | None = None, heldout_dir=None, seed: int = 0,
                 progress: bool = True, limit: int | None = None, stop_after: dict | None = None,
                 until: str | None = None, reuse_from=None) -> dict:
    """Train (or resume) the staged organism; see :class:`StagedTrainer`."""
    return StagedTrainer(data_dir, out_dir, recipe, heldout_dir, seed, progress, limit,
                         reuse_from).run(stop_after, until)
