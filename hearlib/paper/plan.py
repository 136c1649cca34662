"""What the study collects: the records every notebook reads, derived from a profile's parameters.

A profile (``notebooks/profiles/<name>.yaml``) sets sizes such as ``n_samples`` and ``n_masks``;
:func:`study_plan` turns it into :class:`Request` s — (model, dataset, selection of samples,
stage, settings) — one per thing a notebook reads. ``python -m hearlib run`` computes them (in
``make figures``' collect phase); the notebooks then ask :class:`hearlib.paper.study.Study` for the same
records, and find them. The groups are what ``hearlib run --stages`` selects:

``attribution``  θ for the main samples, the t-SNE samples, and every compared model
``validation``   Figs. 3A/3B/5/7/11, Fig. 6's ablation-ratio sweep
``text``         Fig. 4A/15, Table 3
``image``        Fig. 4B/16/17
``lens``         Fig. 8
``prompts``      Table 1: θ and correctness under the nine alternative prompts
``domains``      Fig. 9: attribution and validation on the DomainNet-layout dataset
``explore``      the head explorer (00_explore): every head's attention per image token and the
                 logit lens, for the main samples and each compared model's samples
``questions``    θ per question type (object, colour, position, kind; beyond the paper) for the
                 first ``n_question_samples`` samples answered correctly under every type
``readsite``     where the read happens (11): window knockout, the final position's attention and
                 residual stream, and head-output patching, under every question type, for the first
                 ``n_readsite_samples`` samples answered correctly under all of them, for each of
                 ``readsite_models`` (default: the organisms of 10, else the models compared)
``using``        using the heads (12): greedy generation of ``n_using_samples`` samples (those after the
                 first ``n_samples``, on whose θ the head sets are found) with the top-k HeAr, k
                 attention-chosen and k random heads ablated, and the top set's image attention scaled
``organisms``    the six numbers of 10_organisms for each of ``organisms`` (attribution and
                 validation on ``n_size_samples``, attribution on the t-SNE selection of
                 ``n_size_tsne_samples``, and θ under the ten prompts on ``n_organism_prompt_samples``)

The notebooks and their order, and which groups each reads, are listed in
:data:`hearlib.paper.catalogue.NOTEBOOKS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from hearlib import paths
from hearlib.errors import UserError
from hearlib.paper.catalogue import GROUPS
from hearlib.records.selection import Selection
from hearlib.prompts import ALTERNATIVE_PROMPTS, PAPER_PROMPT
from hearlib.records.stages import Settings

__all__ = ["GROUPS", "DEFAULTS", "Request", "load_profile", "study_plan", "profile_params"]


# What a parameter is when the profile does not set it (the paper's values).
DEFAULTS = dict(
    model=str(paths.organism("hear-organism-s")), models=None, data=None, domain_data=None,
    domains=["real", "sketch", "clipart"], n_samples=200, n_size_samples=200, n_masks=10_000, ratio=0.75,
    seed=0, n_mean_images=100, correct_only=True, method="fast", batch_size=64,
    ratios=[0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875], n_ratio_samples=50, n_tsne_samples=1000,
    n_size_tsne_samples=200, per_class=15, min_per_class=10, n_image_samples=50, n_image_masks=10_000,
    image_ratio=0.75, n_more=12, n_domain_samples=300, n_prompt_samples=40, n_lens_samples=4,
    threshold=0.8, token_threshold=0.05, prompt=None, adaptive=None,
    n_question_samples=40, questions=None, organisms=[], n_organism_prompt_samples=6,
    n_readsite_samples=100, readsite_models=None,
    n_using_samples=100, head_set_sizes=[1, 2, 4, 8], random_sets=3, scales=[0.0, 0.5, 2.0, 4.0], max_new_tokens=3,
)


@dataclass(frozen=True)
class Request:
    """Records of ``stage`` for the samples of ``selection`` of (model, data)."""

    group: str
    model: str
    data: str
    kind: str | None
    domains: tuple[str, ...] | None
    selection: Selection
    stage: str
    settings: Settings

    @property
    def dataset(self) -> tuple:
        return (self.model, self.data, self.kind, self.domains)


def load_profile(profile: str | Path) -> dict:
    """A profile's parameters: a name of :func:`hearlib.paths.profile_names` or a YAML file."""
    import yaml

    path = Path(profile)
    if not path.suffix:
        path = paths.PROFILES / f"{profile}.yaml"
    if not path.is_file():
        raise UserError(f"profile not found: {profile} "
                        f"(give {', '.join(paths.profile_names())} or a YAML file)")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise UserError(f"profile {path} is not a mapping of parameters")
    if "base" in values:               # a profile that changes a few values of another one
        base = str(values.pop("base"))
        if Path(base).stem == path.stem:
            raise UserError(f"profile {path} names itself as its base")
        values = {**load_profile(base), **values}
    return values


def profile_params(profile: str | Path | None = None, **overrides) -> dict:
    """:data:`DEFAULTS`, then the profile's values, then ``overrides`` that are not None."""
    params = dict(DEFAULTS)
    if profile is not None:
        params.update(load_profile(profile))
    params.update({k: v for k, v in overrides.items() if v is not None})
    if not params.get("models"):
        params["models"] = [params["model"]]
    if overrides.get("models") is not None and overrides.get("organisms") is None:
        params["organisms"] = list(params["models"])    # your own models: 10_organisms compares them
    if params.get("data") is None:
        raise UserError("no dataset: give --data (a COCO-format or DomainNet-layout folder)")
    return params


def study_plan(params: dict, groups: Iterable[str] = GROUPS) -> list[Request]:
    """Every record the notebooks read under ``params`` (see the module docstring), for ``groups``."""
    groups = tuple(groups)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise UserError(f"unknown stage group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    plan = PlanBuilder(params, groups)
    for add_requests in (main_model_requests, compared_model_requests, prompt_requests, question_requests,
                         organism_requests, readsite_requests, using_requests, domain_requests):
        add_requests(plan)
    return plan.out


class PlanBuilder:
    """The requests of one plan as :func:`study_plan`'s steps add them, in order, with what every
    step shares: the parameters, the chosen groups, the base settings and the main model."""

    def __init__(self, params: dict, groups: tuple[str, ...]):
        p = self.params = params
        self.groups = groups
        self.main, self.data = str(p["model"]), str(p["data"])
        self.others = [str(m) for m in p["models"] if str(m) != self.main]
        self.base = Settings.make(n_masks=p["n_masks"], ratio=p["ratio"], seed=p["seed"], threshold=p["threshold"],
                                  token_threshold=p["token_threshold"], n_image_masks=p["n_image_masks"],
                                  image_ratio=p["image_ratio"], prompt=p.get("prompt"), **(p.get("adaptive") or {}))
        self.correct = bool(p["correct_only"])
        self.tsne = dict(per_class=p["per_class"])      # min_per_class only filters this selection
        self.out: list[Request] = []

    def pick(self, n, **kwargs) -> Selection:
        """The first ``n`` samples (all: None), answered correctly if the profile asks so."""
        return Selection(n=None if n is None else int(n), correct_only=self.correct, **kwargs)

    def add(self, group, model, selection, stage, settings=None, dataset=None) -> None:
        """One request, kept if its group is chosen; a count of 0 turns a request off."""
        if group in self.groups and selection.n != 0:
            out = Request(group, str(model), *(dataset or (self.data, None, None)), selection, stage,
                          self.base if settings is None else settings)
            self.out.append(out)


def main_model_requests(plan: PlanBuilder) -> None:
    """The main model's records: θ (main and t-SNE samples), x* with the ratio sweep, text, image,
    lens and the explorer's."""
    p, main, pick, add = plan.params, plan.main, plan.pick, plan.add
    add("attribution", main, pick(p["n_samples"]), "attribution")
    add("attribution", main, pick(p["n_tsne_samples"], **plan.tsne), "attribution")
    add("validation", main, pick(p["n_samples"]), "validation")
    for ratio in p["ratios"]:
        add("validation", main, pick(p["n_ratio_samples"]), "validation",
            plan.base.with_(ratio=float(ratio), criteria=("HeAr",)))
    add("text", main, pick(p["n_samples"]), "text")
    add("image", main, pick(p["n_image_samples"]), "image")
    add("lens", main, pick(p["n_lens_samples"]), "lens")
    add("explore", main, pick(p["n_samples"]), "head_attention")
    add("explore", main, pick(p["n_samples"]), "lens")


def compared_model_requests(plan: PlanBuilder) -> None:
    """The records of every compared model, and the first one's image records."""
    p, pick, add = plan.params, plan.pick, plan.add
    for model in plan.others:
        add("attribution", model, pick(p["n_size_samples"]), "attribution")
        add("attribution", model, pick(p["n_size_tsne_samples"], **plan.tsne), "attribution")
        add("validation", model, pick(p["n_size_samples"]), "validation")
        add("text", model, pick(p["n_size_samples"]), "text")
        add("explore", model, pick(p["n_size_samples"]), "head_attention")    # the explorer's other models
        add("explore", model, pick(p["n_size_samples"]), "lens")
    if plan.others:
        add("image", plan.others[0], pick(min(int(p["n_more"]), int(p["n_image_samples"]))), "image")


def prompt_requests(plan: PlanBuilder) -> None:
    """Table 1: screening and θ of the main model under the paper prompt and the nine others."""
    for prompt in (PAPER_PROMPT, *ALTERNATIVE_PROMPTS):
        settings = plan.base.with_(prompt=prompt)
        plan.add("prompts", plan.main, plan.pick(plan.params["n_prompt_samples"]), "screen", settings)
        plan.add("prompts", plan.main, plan.pick(plan.params["n_prompt_samples"]), "attribution", settings)


def question_requests(plan: PlanBuilder) -> None:
    """θ per question type on the samples answered correctly under every type (the dataset's types
    are read only when the group is chosen)."""
    p = plan.params
    if "questions" in plan.groups and p.get("n_question_samples") != 0:
        types = question_types(p)
        both = plan.pick(p["n_question_samples"], questions=tuple((q.prompt, q.answer) for q in types.values()))
        for q in types.values():
            plan.add("questions", plan.main, both, "attribution", plan.base.with_(prompt=q.prompt, answer=q.answer))


def organism_requests(plan: PlanBuilder) -> None:
    """The six numbers of 10_organisms for each organism on disk (the main model by default)."""
    p, pick, add = plan.params, plan.pick, plan.add
    for organism in p.get("organisms") or [plan.main]:
        if not present_on_disk(organism):
            continue                                  # 10_organisms skips it too, and says so
        add("organisms", organism, pick(p["n_size_samples"]), "attribution")
        add("organisms", organism, pick(p["n_size_samples"]), "validation")
        add("organisms", organism, pick(p["n_size_tsne_samples"], **plan.tsne), "attribution")
        for prompt in (PAPER_PROMPT, *ALTERNATIVE_PROMPTS):
            add("organisms", organism, pick(p["n_organism_prompt_samples"]), "attribution",
                plan.base.with_(prompt=prompt))


def readsite_requests(plan: PlanBuilder) -> None:
    """Notebook 11: knockout and readout per question type, patching and x* for each read-site model."""
    p, base, pick, add = plan.params, plan.base, plan.pick, plan.add
    if "readsite" in plan.groups and p.get("n_readsite_samples") != 0:
        types = question_types(p)
        every = pick(p["n_readsite_samples"], questions=tuple((q.prompt, q.answer) for q in types.values()))
        for model in readsite_models(p):
            for q in types.values():
                settings = base.with_(prompt=q.prompt, answer=q.answer)
                add("readsite", model, every, "knockout", settings)
                add("readsite", model, every, "readout", settings)
            add("readsite", model, every, "patching", base)
            add("readsite", model, pick(p["n_size_samples"]), "validation")     # HeAr's x* beside (as in 10)


def using_requests(plan: PlanBuilder) -> None:
    """Notebook 12: generation with the head sets found on the first ``n_samples`` samples' θ, on
    the ``n_using_samples`` samples after them."""
    p = plan.params
    if p.get("n_using_samples") and p.get("n_samples"):
        using = plan.base.with_(head_set_samples=int(p["n_samples"]), head_set_correct_only=plan.correct,
                                head_set_sizes=tuple(p["head_set_sizes"]),
                                random_sets=int(p["random_sets"]), scales=tuple(p["scales"]),
                                max_new_tokens=int(p["max_new_tokens"]))
        plan.add("using", plan.main, plan.pick(p["n_using_samples"], skip=int(p["n_samples"])), "generation", using)


def domain_requests(plan: PlanBuilder) -> None:
    """Fig. 9: x* of the main model on the DomainNet-layout folder, else on ``data``."""
    domain_data = domain_folder(plan.params)
    plan.add("domains", plan.main, plan.pick(plan.params["n_domain_samples"]), "validation",
             dataset=(str(domain_data), "domainnet", tuple(plan.params["domains"])) if domain_data
             else (plan.data, None, None))


def present_on_disk(model) -> bool:
    """False for a local organism path that is not there, resolved as :class:`hearlib.paper.study.Study`
    resolves it (from the repository root: the notebooks run from build/); hub ids and registry
    names count as present (the loader decides)."""

    text = str(model)
    return not text.startswith(("data/", "./", "/")) or Path(paths.from_root(text)).exists()


def readsite_models(params: dict) -> list[str]:
    """The models of notebook 11: ``readsite_models``, else the organisms of 10 (those on disk),
    else the main model and the models compared."""
    chosen = params.get("readsite_models") or params.get("organisms") or [params["model"], *(params.get("models") or [])]
    out: list[str] = []
    for model in map(str, chosen):
        if model not in out and present_on_disk(model):
            out.append(model)
    return out


def question_types(params: dict) -> dict:
    """The question types of ``params``' dataset (:func:`hearlib.records.questions.questions_for` with the
    profile's ``questions``): all four on the generated scenes, the object question alone on COCO."""
    from hearlib.records.pipeline import dataset_kind, load_items
    from hearlib.records.questions import questions_for

    data = Path(str(params["data"]))
    return questions_for(load_items(data, dataset_kind(data)), params.get("questions"))


def domain_folder(params: dict) -> Path | None:
    """The DomainNet-layout folder of Fig. 9: ``domain_data``, else ``data`` if it has domains
    (a DomainNet folder, or generated scenes with ``domains/``); None when there is none (then
    notebook 07 draws Fig. 9 on ``data`` as a single domain)."""
    from hearlib.records.pipeline import dataset_kind

    if params.get("domain_data"):
        return Path(params["domain_data"])
    data = Path(str(params["data"]))
    if (data / "domains").is_dir() or dataset_kind(data) == "domainnet":
        return data
    return None


def fill_command(params: dict, profile: str | None, store: str | Path, groups: Sequence[str] | None = None) -> str:
    """The ``hearlib run`` command that collects ``params``' records (named in error messages)."""
    parts = ["python -m hearlib run"]
    if profile:
        parts.append(f"--profile {profile}")
    parts += [f"--data {params['data']}", f"--out {store}"]
    if params.get("domain_data"):
        parts.append(f"--domain-data {params['domain_data']}")
    if groups:
        parts.append("--stages " + ",".join(groups))
    return " ".join(parts)
