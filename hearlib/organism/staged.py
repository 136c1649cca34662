"""The staged recipe's trainer (:class:`StagedTrainer`, :func:`train_staged`): the stages of
:class:`hearlib.organism.recipe.Recipe` run in order, each resumable from its checkpoint."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hearlib import io
from hearlib.errors import UserError
from hearlib.organism import model as O
from hearlib.organism import scenes
from hearlib.organism import train as T
from hearlib.organism.checkpoints import Checkpoint, pad_batch, pooled, train_steps
from hearlib.organism.recipe import CAPTION_PROMPT, DESCRIPTION_WORDS, INGREDIENTS, Recipe, STAGES, corpus, describe, perplexity, retrieval_accuracy


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
        train, held, questions, vocab = T.prepare_data(Path(data_dir), Path(heldout_dir) if heldout_dir else None,
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
        docs = corpus(scenes.TRAIN_SEED, r.text_docs, kind=r.text_corpus)
        held = corpus(scenes.HELDOUT_SEED, r.heldout_images, kind=r.text_corpus)
        pad = self.tok.pad_token_id
        params = [p for m in modules.values() for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)

        def step_fn(step):
            rng = np.random.default_rng([self.seed, 1, step])
            batch = [self._ids(docs[i][0]) for i in rng.integers(len(docs), size=r.text_batch)]
            ids, mask = pad_batch(batch, pad)
            logits = self._decoder_logits(ids[:, :-1], mask[:, :-1])
            tgt = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)

        self.model.train()
        train_steps(ck, modules, params, steps, r.text_lr, 0.01, step_fn, "stage 1: text pretraining",
              r.save_every, self.progress, stop_after)
        self.model.eval()
        return steps, {"batch": r.text_batch, "lr": r.text_lr, "docs": r.text_docs, "corpus": r.text_corpus}, self.check_text(held)

    @torch.no_grad()
    def check_text(self, held) -> dict:
        nll, n, ok, qa = 0.0, 0, 0, 0
        for s in range(0, len(held), 64):
            chunk = held[s:s + 64]
            ids, mask = pad_batch([self._ids(t) for t, _ in chunk], self.tok.pad_token_id)
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
            ids, mask = pad_batch([self._ids(c) for c in caps], self.tok.pad_token_id)
            out = clip(input_ids=ids, attention_mask=mask, pixel_values=T.normalize(data.images[torch.from_numpy(idx)]),
                       return_loss=True)
            return out.loss

        clip.train()
        train_steps(ck, modules, params, steps, r.clip_lr, 0.05, step_fn, "stage 2: contrastive tower",
              r.save_every, self.progress, stop_after)
        clip.eval()
        self.vt.eval()
        return steps, {"batch": r.clip_batch, "lr": r.clip_lr, "text_layers": r.clip_text_layers}, \
            self.check_contrastive(clip)

    @torch.no_grad()
    def check_contrastive(self, clip) -> dict:
        held = self._images("held")
        caps = self._captions(held.records)
        ids, mask = pad_batch([self._ids(c) for c in caps], self.tok.pad_token_id)
        img = torch.cat([pooled(clip.get_image_features(pixel_values=T.normalize(held.images[s:s + 256])))
                         for s in range(0, len(caps), 256)])
        txt = pooled(clip.get_text_features(input_ids=ids, attention_mask=mask))
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
        ids, mask = pad_batch(seqs, self.tok.pad_token_id)
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
        train_steps(ck, modules, params, steps, r.align_lr, 0.0, step_fn, "stage 3: projector alignment",
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
        qw = T.question_weights(data.questions)
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
            ids, mask = pad_batch([s[:-1] for s in seqs], self.tok.pad_token_id)

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
        train_steps(ck, modules, params, steps, r.instruct_lr, 0.01, step_fn, "stage 4: instruction tuning",
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
        train_steps(ck, modules, params, steps, r.tune_lr, 0.01, step_fn, "stage 5: tuning, tower unfrozen",
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
