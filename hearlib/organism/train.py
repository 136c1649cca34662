"""Trainer of the model organisms: ``python -m hearlib train --data DIR --out DIR``.

Recipe (LLaVA-1.5 in miniature, sized for two CPU cores):

* stage A, the shared vision tower: the CLIP tower is trained from scratch with linear
  heads on the mean of its last-layer patch tokens (the tokens LLaVA hands the projector),
  one head per label the data has (object; with generated scenes also colour and
  position), plus a dense per-patch head for the main object's class, AdamW with warmup + cosine decay. Trained once and shared by every size.
* stage B, one per size: the tower is frozen (its patch features are computed once),
  and the projector + Llama decoder + LM head learn next-token prediction of the answer
  word at the final ``:`` and of ``</s>`` after it, over all question types (the paper
  prompt, the nine prompts of paper C.3, colour, position, kind).

Held-out accuracy (per question type and per style/domain) is measured through the
real ``LlavaForConditionalGeneration`` forward (vision tower included).
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hearlib.errors import UserError
from hearlib.organism import model as O
from hearlib.organism.data import Data, augmenter, load_images, normalize, prepare_data, split
from hearlib.organism.erasure import erase_features, fold_into_linear
from hearlib.prompts import PAPER_PROMPT


# stage A's labels, the first also per patch: the fast recipe supervises the tower with the class
TOWER_TARGETS = ("object", "color", "position")


def lr_at(step, total, peak, warmup):
    """Learning rate at ``step``: linear warmup, then cosine decay to 2% of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def optimizer(params, lr, wd):
    """AdamW with weight decay on matrices only."""
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98))


# --------------------------------------------------------------------------- stage A
class VisionHeads(nn.Module):
    """Linear heads on the mean patch token, plus a dense head on every patch token (the main
    object's ``dense`` label, its class by default, where it covers the patch, else background)."""

    def __init__(self, width: int, n_classes: dict[str, int], dense: str = "object"):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in n_classes.items()})
        self.dense_norm = nn.LayerNorm(width)
        self.dense = nn.Linear(width, n_classes[dense] + 1)

    def forward(self, feats):
        pooled = self.norm(feats.mean(1))
        out = {k: h(pooled) for k, h in self.heads.items()}
        out["dense"] = self.dense(self.dense_norm(feats))
        return out


def train_vision(vision_tower, data: Data, vocab: dict[str, list[str]], steps: int, batch: int = 64,
                 lr: float = 2e-3, seed: int = 0, progress: bool = True, log: list | None = None,
                 dense_weight: float = 1.0, augment=None, val: "Data | None" = None, eval_every: int = 0,
                 patience: int = 0, targets: tuple[str, ...] = TOWER_TARGETS):
    """Stage A: the CLIP tower with linear heads on its pooled patch tokens. ``targets``: the labels it
    is trained on (pooled heads), the first of them also per patch (the dense head); without
    ``object`` the tower never sees a class label (issue 38's design D1). ``augment`` maps a uint8
    batch to an augmented one; with ``val`` and ``eval_every`` the held-out object accuracy of the
    heads is measured every ``eval_every`` steps, the best state kept and training stopped after
    ``patience`` evaluations without improvement."""
    from tqdm import tqdm
    g = torch.Generator().manual_seed(seed)
    unknown = set(targets) - set(TOWER_TARGETS)
    if unknown or not targets:
        raise UserError(f"tower targets must be among {', '.join(TOWER_TARGETS)}, got {', '.join(targets) or 'none'}")
    tasks = {q: vocab[q] for q in targets if q in data.questions}
    dense = next(iter(tasks))
    labels = {q: torch.tensor([vocab[q].index(v) if v is not None else -100 for v in data.labels[q]])
              for q in tasks}
    heads = VisionHeads(vision_tower.config.hidden_size, {q: len(v) for q, v in tasks.items()}, dense)
    params = list(vision_tower.parameters()) + list(heads.parameters())
    opt = optimizer(params, lr, 0.05)
    vision_tower.train()
    n = len(data.records)
    bar = tqdm(range(steps), desc="stage A: vision tower", disable=not progress)
    ema = None
    best = (-1.0, None, 0)          # (val accuracy, state, evaluations since the best)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, max(1, steps // 20))
        idx = torch.randint(0, n, (batch,), generator=g)
        x = normalize(augment(data.images[idx]) if augment else data.images[idx])
        out = heads(O.image_features(vision_tower, x))
        loss = sum(F.cross_entropy(out[q], labels[q][idx], ignore_index=-100) for q in tasks)
        if data.patch_cover is not None and dense_weight > 0:
            cover = data.patch_cover[idx]
            obj = labels[dense][idx]
            dense_t = torch.where(cover >= 0.25, obj[:, None].expand_as(cover), torch.full_like(obj[:, None], len(tasks[dense])).expand_as(cover))
            dense_t = torch.where((cover > 0.02) & (cover < 0.25), torch.full_like(dense_t, -100), dense_t)
            loss = loss + dense_weight * F.cross_entropy(out["dense"].flatten(0, 1), dense_t.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        acc = (out[dense].argmax(-1) == labels[dense][idx]).float().mean().item()
        ema = (loss.item(), acc) if ema is None else (0.95 * ema[0] + 0.05 * loss.item(), 0.95 * ema[1] + 0.05 * acc)
        if log is not None:
            log.append(loss.item())
        bar.set_postfix(loss=f"{ema[0]:.3f}", **{f"{dense}_acc": f"{ema[1]:.2f}"})
        if val is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            acc = vision_accuracy(vision_tower, heads, val, vocab, questions=(dense,))
            score = float(np.mean(list(acc.values())))
            vision_tower.train()
            best = _keep_best(best, score, (vision_tower, heads), step)
            if best[2] >= patience > 0:
                print(f"stage A: early stop at step {step + 1} (validation object accuracy {best[0]:.3f})", flush=True)
                break
    if best[1] is not None:
        vision_tower.load_state_dict(best[1][0])
        heads.load_state_dict(best[1][1])
    vision_tower.eval()
    return heads


def _keep_best(best, score, modules, step):
    """Early stopping's book-keeping: (best score, its state dicts, evaluations since)."""
    if score > best[0]:
        return score, tuple({k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules), 0
    return best[0], best[1], best[2] + 1


@torch.no_grad()
def vision_accuracy(vision_tower, heads, data: Data, vocab, batch=256, questions=None) -> dict:
    vision_tower.eval()
    correct = defaultdict(lambda: [0, 0])
    for s in range(0, len(data.records), batch):
        x = normalize(data.images[s:s + batch])
        out = heads(O.image_features(vision_tower, x))
        for q, logits in out.items():
            if q == "dense" or (questions and q not in questions):
                continue
            pred = logits.argmax(-1).tolist()
            for i, p in enumerate(pred):
                lab = data.labels[q][s + i]
                if lab is None:
                    continue
                key = (q, data.domains[s + i])
                correct[key][0] += int(vocab[q][p] == lab)
                correct[key][1] += 1
    return {k: c / t for k, (c, t) in correct.items()}


# --------------------------------------------------------------------------- stage B
class Prompts:
    """Token ids of every prompt, with the image token expanded as the processor does."""

    def __init__(self, tokenizer, questions: list[str]):
        self.tok = tokenizer
        self.image_id = tokenizer.convert_tokens_to_ids("<image>")
        self.items = []  # (question, prompt, ids)
        for q in questions:
            for p in O.QUESTIONS[q][0]:
                ids = tokenizer(O.prompt_text(p))["input_ids"]
                k = ids.index(self.image_id)
                ids = ids[:k] + [self.image_id] * O.NUM_IMAGE_TOKENS + ids[k + 1:]
                if tokenizer.unk_token_id in ids:
                    raise UserError(f"prompt {p!r} has words outside the organism's vocabulary")
                self.items.append((q, p, ids))
        self.by_question = defaultdict(list)
        for i, (q, _, _) in enumerate(self.items):
            self.by_question[q].append(i)


def answer_id(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise UserError(f"answer word {word!r} is not a single token of the organism's vocabulary")
    return ids[0]


def question_weights(questions):
    w = {"object": 0.45, "color": 0.2, "position": 0.2, "kind": 0.15}
    ws = np.array([w[q] for q in questions], dtype=np.float64)
    return ws / ws.sum()


def train_decoder(model, tokenizer, feats: torch.Tensor, data: Data, steps: int, batch: int = 48,
                  lr: float = 1.5e-3, seed: int = 0, progress: bool = True, log: list | None = None,
                  desc: str = "stage B", val: "Data | None" = None, val_feats: torch.Tensor | None = None,
                  eval_every: int = 0, patience: int = 0):
    """Stage B: projector + decoder + LM head on frozen tower features ``feats`` [N, P, w].
    With ``val``/``val_feats`` and ``eval_every``: early stopping on validation answer accuracy."""
    from tqdm import tqdm
    vt, proj, lm, head, embed = O.parts(model)
    for p in vt.parameters():
        p.requires_grad_(False)
    params = [p for m in (proj, lm, head) for p in m.parameters()]
    opt = optimizer(params, lr, 0.01)
    prompts = Prompts(tokenizer, data.questions)
    rng = np.random.default_rng(seed)
    qw = question_weights(data.questions)
    ans = {q: [answer_id(tokenizer, v) if v is not None else None for v in data.labels[q]] for q in data.questions}
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    n = len(data.records)
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    ema = None
    best = (-1.0, None, 0)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, max(1, steps // 20))
        seqs, img_idx, lens = [], [], []
        while len(seqs) < batch:
            i = int(rng.integers(n))
            q = data.questions[rng.choice(len(qw), p=qw)]
            a = ans[q][i]
            if a is None:
                continue
            ids = prompts.items[prompts.by_question[q][rng.integers(len(prompts.by_question[q]))]][2]
            seqs.append(ids + [a, eos])
            img_idx.append(i)
            lens.append(len(ids))
        T = max(len(s) for s in seqs) - 1
        inp = torch.full((batch, T), pad, dtype=torch.long)
        mask = torch.zeros((batch, T), dtype=torch.long)
        for b, s in enumerate(seqs):
            inp[b, :len(s) - 1] = torch.tensor(s[:-1])
            mask[b, :len(s) - 1] = 1
        emb = embed(inp)
        img = proj(feats[torch.tensor(img_idx)])
        emb = emb.masked_scatter((inp == prompts.image_id).unsqueeze(-1).expand_as(emb), img.reshape(-1, img.shape[-1]))
        hidden = lm(inputs_embeds=emb, attention_mask=mask).last_hidden_state
        L = torch.tensor(lens)
        b = torch.arange(batch)
        pos = torch.stack([L - 1, L], 1)                                  # ':' -> answer, answer -> </s>
        tgt = torch.stack([torch.tensor([s[-2] for s in seqs]), torch.full((batch,), eos)], 1)
        logits = head(hidden[b[:, None], pos])
        loss_ans = F.cross_entropy(logits[:, 0], tgt[:, 0])
        loss = loss_ans + 0.2 * F.cross_entropy(logits[:, 1], tgt[:, 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        acc = (logits[:, 0].argmax(-1) == tgt[:, 0]).float().mean().item()
        ema = (loss_ans.item(), acc) if ema is None else (0.95 * ema[0] + 0.05 * loss_ans.item(), 0.95 * ema[1] + 0.05 * acc)
        if log is not None:
            log.append(loss_ans.item())
        bar.set_postfix(loss=f"{ema[0]:.3f}", acc=f"{ema[1]:.2f}")
        if val is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            score = feature_accuracy(model, tokenizer, val_feats, val)
            model.train()
            best = _keep_best(best, score, (proj, lm, head), step)
            if best[2] >= patience > 0:
                print(f"{desc}: early stop at step {step + 1} (validation answer accuracy {best[0]:.3f})", flush=True)
                break
    if best[1] is not None:
        for m, st in zip((proj, lm, head), best[1]):
            m.load_state_dict(st)
    model.eval()
    return model


@torch.no_grad()
def feature_accuracy(model, tokenizer, feats: torch.Tensor, data: Data, batch: int = 128) -> float:
    """Answer accuracy of the first prompt of every question type, from precomputed tower features."""
    vt, proj, lm, head, embed = O.parts(model)
    model.eval()
    prompts = Prompts(tokenizer, data.questions)
    ok = tot = 0
    for q in data.questions:
        ids = prompts.items[prompts.by_question[q][0]][2]
        keep = [i for i, v in enumerate(data.labels[q]) if v is not None]
        for s in range(0, len(keep), batch):
            idx = keep[s:s + batch]
            inp = torch.tensor([ids] * len(idx))
            emb = embed(inp)
            img = proj(feats[torch.tensor(idx)])
            emb = emb.masked_scatter((inp == prompts.image_id).unsqueeze(-1).expand_as(emb),
                                     img.reshape(-1, img.shape[-1]))
            pred = head(lm(inputs_embeds=emb).last_hidden_state[:, -1]).argmax(-1).tolist()
            words = tokenizer.convert_ids_to_tokens(pred)
            ok += sum(w == data.labels[q][i] for w, i in zip(words, idx))
            tot += len(idx)
    return ok / max(1, tot)


@torch.no_grad()
def compute_features(vision_tower, images_u8, batch=256, layer: int = -1):
    vision_tower.eval()
    return torch.cat([O.image_features(vision_tower, normalize(images_u8[s:s + batch]), layer)
                      for s in range(0, len(images_u8), batch)])


@torch.no_grad()
def evaluate(model, tokenizer, data: Data, batch: int = 128, object_prompts: str = "all",
             alt_subset: int | None = None, progress: bool = False) -> dict:
    """Held-out accuracy through the full Llava forward (vision tower included).

    Returns ``{(question, domain): acc}`` plus ``("object:<prompt index>", "all")`` entries.
    ``alt_subset`` evaluates the nine alternative prompts on the first that many images only.
    """
    from tqdm import tqdm
    model.eval()
    prompts = Prompts(tokenizer, data.questions)
    res = defaultdict(lambda: [0, 0])
    n = len(data.records)
    work = []
    for k, (q, p, ids) in enumerate(prompts.items):
        is_alt = q == "object" and p != PAPER_PROMPT
        m = min(n, alt_subset) if (is_alt and alt_subset) else n
        work.append((k, q, p, ids, m, is_alt))
    bar = tqdm(total=sum(w[4] for w in work), desc="held-out eval", disable=not progress, leave=False)
    for k, q, p, ids, m, is_alt in work:
        for s in range(0, m, batch):
            e = min(m, s + batch)
            keep = [i for i in range(s, e) if data.labels[q][i] is not None]
            if not keep:
                continue
            pix = normalize(data.images[keep])
            inp = torch.tensor([ids] * len(keep))
            logits = model(input_ids=inp, pixel_values=pix).logits[:, -1]
            pred = tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
            for i, w in zip(keep, pred):
                ok = int(w == data.labels[q][i])
                keys = [(f"object:{k}", "all")] if q == "object" else []
                if not is_alt:
                    keys += [(q, data.domains[i]), (q, "all")]
                for key in keys:
                    res[key][0] += ok
                    res[key][1] += 1
            bar.update(e - s)
    bar.close()
    return {k: c / t for k, (c, t) in res.items()}


def format_table(name: str, acc: dict) -> str:
    questions = [q for q in ("object", "color", "position", "kind") if (q, "all") in acc]
    domains = sorted({d for (q, d) in acc if d != "all" and not q.startswith("object:")})
    lines = [f"held-out accuracy, {name} (paper prompt for object; one row per question type)",
             "  " + "question".ljust(10) + "".join(d.rjust(9) for d in domains) + "all".rjust(9)]
    for q in questions:
        lines.append("  " + q.ljust(10) + "".join(f"{100 * acc.get((q, d), float('nan')):8.1f}%" for d in domains)
                     + f"{100 * acc[(q, 'all')]:8.1f}%")
    alts = sorted((int(q.split(":")[1]), v) for (q, d), v in acc.items() if q.startswith("object:"))
    if alts:
        lines.append("  object prompts (0 = paper prompt, 1-9 = paper C.3): "
                     + " ".join(f"{k}:{100 * v:.0f}%" for k, v in alts))
    return "\n".join(lines)


def steps_for(n_images: int, vision_batch: int = 64, decoder_batch: int = 48) -> tuple[int, int]:
    """Step budgets from the data size: about 40 epochs of the tower (stage A) and 15 of the decoder
    (stage B), bounded to [300, 6000] and [200, 1500]; early stopping usually ends them sooner."""
    return (int(np.clip(round(40 * n_images / vision_batch), 300, 6000)),
            int(np.clip(round(15 * n_images / decoder_batch), 200, 1500)))


@torch.no_grad()
def class_report(model, tokenizer, data: Data, batch: int = 128) -> dict:
    """Held-out object accuracy (paper prompt, full Llava forward) per domain, per class and per
    (domain, class), with the number of images of each."""
    model.eval()
    ids = Prompts(tokenizer, ["object"]).items[0][2]
    hits = []
    for s in range(0, len(data.records), batch):
        x = normalize(data.images[s:s + batch])
        logits = model(input_ids=torch.tensor([ids] * len(x)), pixel_values=x).logits[:, -1]
        words = tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
        hits += [int(w == r.label) for w, r in zip(words, data.records[s:s + batch])]
    groups = defaultdict(list)
    for h, r, d in zip(hits, data.records, data.domains):
        for key in (("all", "all"), ("domain", d), ("class", r.label), ("domain/class", f"{d}/{r.label}")):
            groups[key].append(h)
    out = {k: {} for k in ("domain", "class", "domain/class")}
    for (kind, name), v in sorted(groups.items()):
        if kind == "all":
            out["accuracy"], out["images"] = float(np.mean(v)), len(v)
        else:
            out[kind][name] = {"accuracy": float(np.mean(v)), "images": len(v)}
    return out


def format_class_report(name: str, report: dict) -> str:
    lines = [f"held-out report, {name}: object accuracy {100 * report['accuracy']:.1f}% on {report['images']} images"]
    for kind in ("domain", "class", "domain/class"):
        lines.append(f"  per {kind}: " + ", ".join(f"{k} {100 * v['accuracy']:.0f}% ({v['images']})"
                                                  for k, v in report[kind].items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------- pipeline
@dataclass
class TrainingData:
    """What :func:`train_all`'s steps share once the data is read: the images (training, held-out and a
    user's validation split), the answer words, the tokenizer and processor, the step budgets."""

    tr: Data
    ho: Data
    val: Data | None
    vocab: dict[str, list[str]]
    user_data: bool
    image_size: int
    tokenizer: object
    processor: object
    vision_steps: int | None
    decoder_steps: dict | None


def training_data(data_dir, heldout_dir, sizes, *, seed, holdout_frac, limit, progress, user_data, image_size,
                  vision_steps, decoder_steps, vision_batch, decoder_batch) -> TrainingData:
    """Read and split the data (a user's folder also gives 10% for validation), settle the step budgets,
    build the tokenizer and processor of its words and load the images, saying what it found."""
    train, held, questions, vocab = prepare_data(Path(data_dir), Path(heldout_dir) if heldout_dir else None,
                                                 seed, holdout_frac, limit, progress)
    user_data = questions == ["object"] if user_data is None else user_data
    S = image_size or O.IMAGE_SIZE
    O.patch_for(S)
    val_records, val = [], None
    if user_data:
        train, val_records = split(train, seed + 7, 0.1)
    if not user_data and (vision_steps is None or decoder_steps is None):
        from hearlib.organism.defaults import DEFAULT_DECODER_STEPS, DEFAULT_VISION_STEPS
        vision_steps = DEFAULT_VISION_STEPS if vision_steps is None else vision_steps
        decoder_steps = decoder_steps or dict(DEFAULT_DECODER_STEPS)
    if vision_steps is None or decoder_steps is None:
        auto = steps_for(len(train), vision_batch, decoder_batch)
        vision_steps = auto[0] if vision_steps is None else vision_steps
        decoder_steps = decoder_steps or {s: auto[1] for s in [O.resolve_size(x).name for x in sizes]}
        print(f"steps from the data size ({len(train)} images): stage A {vision_steps}, stage B {auto[1]} "
              f"(at most; early stopping on the validation split)", flush=True)
    tokenizer = O.build_tokenizer(sorted(set(w for v in vocab.values() for w in v)))
    processor = O.build_processor(tokenizer, S)
    print(f"data: {len(train)} training images, {len(held)} held-out images; questions: {', '.join(questions)}; "
          f"{len(vocab['object'])} object classes; vocabulary {len(tokenizer)} tokens; {S} px", flush=True)
    tr = Data(train, load_images(train, progress, S), questions)
    ho = Data(held, load_images(held, progress, S), questions)
    if user_data and val_records:
        val = Data(val_records, load_images(val_records, progress, S), questions)
        print(f"validation split for early stopping: {len(val_records)} images", flush=True)
    return TrainingData(tr, ho, val, vocab, user_data, S, tokenizer, processor, vision_steps, decoder_steps)


def train_shared_tower(vt, data: TrainingData, vision_from, stop: dict, log: list, **options) -> dict:
    """The tower every size shares: taken from ``vision_from`` and/or trained (stage A, ``options`` as
    :func:`train_vision`'s), its heads' held-out accuracy printed and returned ({} without stage A)."""
    vacc = {}
    if vision_from:
        from transformers import AutoModelForImageTextToText
        src = AutoModelForImageTextToText.from_pretrained(vision_from)
        vt.load_state_dict(src.model.vision_tower.state_dict())
        vt.eval()
        print(f"vision tower taken from {vision_from}" + (f"; stage A continues for {data.vision_steps} steps"
                                                           if data.vision_steps else "; stage A skipped"), flush=True)
    if data.vision_steps:
        heads = train_vision(vt, data.tr, data.vocab, data.vision_steps, log=log,
                             augment=augmenter(data.image_size) if data.user_data else None,
                             eval_every=max(20, data.vision_steps // 20) if stop else 0, **options, **stop)
        vacc = vision_accuracy(vt, heads, data.ho, data.vocab)
        print("stage A (vision tower, linear heads) held-out: "
              + ", ".join(f"{q}/{d} {100 * a:.1f}%" for (q, d), a in sorted(vacc.items())), flush=True)
    return vacc


def train_size(model, size, data: TrainingData, feats, val_feats, steps: int, stop: dict, started: float, *,
               eval_alt_subset, progress, eraser=None, **options) -> dict:
    """Stage B of one size on the frozen tower's features (``options`` as :func:`train_decoder`'s), then
    its held-out accuracy, printed; returns its entry of the results (seconds since ``started``);
    ``eraser`` (design D2) is folded into the projector after training on the erased features."""
    train_decoder(model, data.tokenizer, feats, data.tr, steps, progress=progress, desc=f"stage B: {size.name}",
                  val_feats=val_feats, eval_every=max(20, steps // 20) if stop else 0, **options, **stop)
    if eraser is not None:
        fold_into_linear(O.parts(model)[1].linear_1, eraser)
    for p in model.parameters():
        p.requires_grad_(True)
    t_train = time.time() - started
    acc = evaluate(model, data.tokenizer, data.ho, alt_subset=eval_alt_subset, progress=progress)
    print(format_table(size.name, acc), flush=True)
    print(f"  {size.name}: {size.layers} layers × {size.heads} heads, decoder trained in {t_train / 60:.1f} min",
          flush=True)
    return {"train_s": t_train, "acc": {f"{q}/{d}": a for (q, d), a in acc.items()}}


def save_size(model, data: TrainingData, dest: Path, meta: dict) -> None:
    """One size's folder: the model, the processor and ``hearlib_training.json`` (``meta``)."""
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    data.processor.save_pretrained(dest)
    (dest / "hearlib_training.json").write_text(json.dumps(meta, indent=1))


def heldout_report(model, data: TrainingData, size, steps: int, dest: Path | None) -> dict:
    """A user's folder: the held-out report per domain and class, printed, saved as
    ``dest/heldout_report.json`` (unless ``dest`` is None) and returned."""
    report = class_report(model, data.tokenizer, data.ho)
    print(format_class_report(size.name, report), flush=True)
    if dest is not None:
        from hearlib import io
        io.save_json(dest / "heldout_report.json",
                     {"name": size.name, "image_size": data.image_size, "train_images": len(data.tr.records),
                      "validation_images": len(data.val.records) if data.val is not None else 0,
                      "vision_steps": data.vision_steps, "decoder_steps": steps,
                      "prompt": PAPER_PROMPT, **report})
    return report


def train_all(data_dir, out_dir, sizes: list[str], seed: int = 0, heldout_dir=None, vision_steps: int = 1200,
              decoder_steps: dict | None = None, limit: int | None = None, holdout_frac: float = 0.1,
              progress: bool = True, save: bool = True, eval_alt_subset: int | None = 150,
              vision_batch: int = 64, decoder_batch: int = 48, vision_lr: float = 2e-3,
              decoder_lr: float = 1.5e-3, dense_weight: float = 1.0, vision_from=None,
              image_size: int | None = None, user_data: bool | None = None, patience: int = 4,
              feature_layer: int = -1, name: str | None = None, decoder_from=None,
              tower_targets: tuple[str, ...] = TOWER_TARGETS, erase: str | None = None) -> dict:
    """Train the shared vision tower and the given sizes; save to ``out_dir/<name>/``.

    ``feature_layer`` is the tower layer the projector reads (``vision_feature_layer``; -1 the last,
    0 the patch embeddings alone, an encoder-free VLM's input); ``name`` saves the one size trained
    under another folder name (the fast organisms keep their size's name). ``decoder_from``, a finished
    organism of the same size, tower and vocabulary, continues stage B from its projector and decoder
    (its batches drawn with ``seed + 1``, so the continuation does not replay the first run's order);
    ``erase`` ("category") erases that concept from the tower's tokens (:mod:`hearlib.organism.erasure`).

    On a user's folder (``user_data``; default: a folder without generated labels) the images are
    augmented in stage A, a validation split (10% of the training images) stops both stages early
    (``patience`` evaluations without improvement), ``vision_steps``/``decoder_steps`` None are
    chosen from the data size (:func:`steps_for`), and a held-out report per domain and class is
    printed and saved as ``heldout_report.json`` in each model folder."""
    torch.manual_seed(seed)
    t0 = time.time()
    data = training_data(data_dir, heldout_dir, sizes, seed=seed, holdout_frac=holdout_frac, limit=limit,
                         progress=progress, user_data=user_data, image_size=image_size, vision_steps=vision_steps,
                         decoder_steps=decoder_steps, vision_batch=vision_batch, decoder_batch=decoder_batch)
    stop = dict(val=data.val, patience=patience) if data.val is not None else {}
    t_data = time.time() - t0

    sizes = [O.resolve_size(s) for s in sizes]
    if name is not None and len(sizes) != 1:
        raise UserError("a name is given to one size only")
    first = O.build_model(sizes[0], data.tokenizer, seed, data.image_size, feature_layer)
    vt = first.model.vision_tower
    logs = {"vision": []}
    t1 = time.time()
    vacc = train_shared_tower(vt, data, vision_from, stop, logs["vision"], batch=vision_batch, lr=vision_lr, seed=seed,
                              progress=progress, dense_weight=dense_weight, targets=tower_targets)
    t_vision = time.time() - t1
    if decoder_from:
        O.load_decoder_from(first, data.tokenizer, Path(decoder_from), len(sizes))
    layer = first.config.vision_feature_layer        # as the model reads it (0 counted from the end)
    feats = compute_features(vt, data.tr.images, layer=layer)
    val_feats = compute_features(vt, data.val.images, layer=layer) if data.val is not None else None
    vision_state = {k: v.clone() for k, v in vt.state_dict().items()}
    eraser, feats, val_feats, erasure = erase_features(erase, feats, val_feats, data.tr, data.ho,
                                                       lambda images: compute_features(vt, images, layer=layer))

    results = {"data_s": t_data, "vision_s": t_vision, "vision_acc": {f"{q}/{d}": a for (q, d), a in vacc.items()},
               "sizes": {}}
    for size in sizes:
        t2 = time.time()
        model = first if size is sizes[0] else O.build_model(size, data.tokenizer, seed, data.image_size, feature_layer)
        model.model.vision_tower.load_state_dict(vision_state)
        steps = (data.decoder_steps or {}).get(size.name, 600)
        logs[size.name] = []
        results["sizes"][size.name] = train_size(
            model, size, data, feats, val_feats, steps, stop, t2, eval_alt_subset=eval_alt_subset, progress=progress,
            batch=decoder_batch, lr=decoder_lr, seed=seed + 1 if decoder_from else seed, log=logs[size.name],
            eraser=eraser)
        dest = Path(out_dir) / (name or size.name)
        if save:
            save_size(model, data, dest, {
                "name": name or size.name, "size": size.name, "feature_layer": feature_layer, "seed": seed,
                "data": str(data_dir), "heldout": str(heldout_dir),
                **({"decoder_from": str(decoder_from), "decoder_lr": decoder_lr} if decoder_from else {}),
                "vision_steps": data.vision_steps, "decoder_steps": steps, "questions": data.tr.questions,
                **({"tower_targets": list(tower_targets)} if tower_targets != TOWER_TARGETS else {}),
                **({"erasure": erasure} if erasure else {}),
                "answers": data.vocab, "heldout_accuracy": results["sizes"][size.name]["acc"],
                "vision_heldout_accuracy": results["vision_acc"]})
        if data.user_data:
            results["sizes"][size.name]["report"] = heldout_report(model, data, size, steps, dest if save else None)
    results.update(total_s=time.time() - t0, logs=logs)
    print(f"total training time {results['total_s'] / 60:.1f} min (data {t_data:.0f} s, vision tower "
          f"{t_vision / 60:.1f} min)", flush=True)
    return results
