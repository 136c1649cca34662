"""Resumable training stages of the staged recipe: a checkpoint per stage (weights, optimizer,
step, random state) and the loop that saves it, so an interrupted stage resumes bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hearlib import io
from hearlib.organism import train as T


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


def train_steps(ck: Checkpoint, modules: dict, params: list, steps: int, lr: float, wd: float, step_fn,
          desc: str, save_every: int, progress: bool, stop_after: int | None = None) -> list[float]:
    """AdamW, 5% warmup + cosine, clipping 1.0; ``step_fn(step)`` returns the loss of that step."""
    from tqdm import tqdm
    opt = T.optimizer(params, lr, wd)
    start = ck.load(modules, opt)
    losses = []
    bar = tqdm(range(start, steps), desc=desc, disable=not progress, initial=start, total=steps)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = T.lr_at(step, steps, lr, max(1, steps // 20))
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


def pooled(out) -> torch.Tensor:
    """CLIP's projected embedding (transformers 5 wraps it in an output object)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def pad_batch(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    T_ = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T_), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), T_), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    return ids, mask
