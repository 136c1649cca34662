"""Notebook 10's side-by-side table: six of the paper's numbers per organism, how each organism was
trained, and where each disagrees with the paper (generated from the numbers)."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["PAPER", "WHAT", "recipe_of", "six_cells", "disagreements"]

# the paper's value of each of the six numbers (LLaVA-1.5-7B), and what is measured
PAPER = {"Fig. 3C": "middle-to-late layers", "Fig. 3A": "HeAr needs the fewest heads of the four criteria",
         "Table 2": "0.82 ± 0.05 / 0.91 ± 0.03 (R² 0.77–0.92 over ten models)", "Table 1": "0.95 (0.91–0.97)",
         "Fig. 7": "80%", "Fig. 3E": "clusters by category (qualitative)"}
WHAT = {"Fig. 3C": "layer most often in x* (relative depth)",
        "Fig. 3A": "heads HeAr needs: faithfulness > 0.8 / completeness < 0.2",
        "Table 2": "held-out R² / Pearson ρ of θ·x + b", "Table 1": "cosine of θ, paper prompt vs the nine others",
        "Fig. 7": "samples where no single head costs > 5%", "Fig. 3E": "nearest neighbour in θ of the same category (chance)"}


def recipe_of(folder) -> str:
    """How the organism was trained, from its training record (fast / staged / staged minus an
    ingredient / staged with stage 5, the tower tuned at the end); "—" when it has none."""
    folder = Path(str(folder))
    staged = folder / "training_stages.json"
    if staged.is_file():
        record = json.loads(staged.read_text())
        tuned = any(s.get("stage") == "tune" for s in record.get("stages", []))
        return ("staged" + "".join(f" − {k}" for k in record.get("without") or {})
                + (", tower tuned" if tuned else ""))
    trained = folder / "hearlib_training.json"
    if trained.is_file():
        return json.loads(trained.read_text()).get("recipe", "fast")
    return "—"


def six_cells(r) -> dict:
    """One organism's row of notebook 10's results as the table's cells, keyed by paper item; a number with
    a 95% bootstrap interval over the samples (``<name>_ci``) shows it in brackets."""
    def with_ci(name: str, form: str) -> str:
        low, high = getattr(r, f"{name}_ci", (float("nan"),) * 2)
        shown = format(getattr(r, name), form)
        return shown if low != low else f"{shown} [{format(low, form)}–{format(high, form)}]"

    return {"Fig. 3C": f"layer {r.layer_peak} of {r.layers} ({r.depth:.2f})",
            "Fig. 3A": f"{with_ci('hear_faith', '.1f')} / {with_ci('hear_comp', '.1f')}",
            "Table 2": f"{r.r2:.2f} ± {r.r2_std:.2f} / {r.rho:.2f} ± {r.rho_std:.2f}",
            "Table 1": with_ci("prompt_cos", ".2f"), "Fig. 7": with_ci("no_head", ".0%"),
            "Fig. 3E": f"{with_ci('same', '.0%')} ({r.chance:.0%})"}


def disagreements(r) -> list[str]:
    """The paper items on which one organism's row disagrees with the paper, each in a sentence."""
    notes = []
    if r.depth < 1 / 3:
        notes.append(f"Fig. 3C: its important heads sit early (layer {r.layer_peak} of {r.layers}), "
                     "not in the middle-to-late layers")
    if r.r2 < 0.7 or r.rho < 0.85:
        notes.append(f"Table 2: its flow is less linear (R² {r.r2:.2f}, ρ {r.rho:.2f}; paper ≥ 0.77 / 0.88)")
    if r.prompt_cos < 0.9:
        notes.append(f"Table 1: θ depends more on the prompt's wording (cosine {r.prompt_cos:.2f}; paper 0.91–0.97)")
    if r.no_head < 0.8:
        notes.append(f"Fig. 7: single heads matter more (no head > 5% in {r.no_head:.0%} of samples; paper 80%)")
    if r.same <= 2 * r.chance:
        notes.append("Fig. 3E: θ clusters by category little above chance")
    return notes
