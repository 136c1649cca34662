"""How every notebook opens: :func:`open_notebook` resolves its parameters from one profile.

A notebook's ``parameters`` cell holds only ``profile`` (a name of ``notebooks/profiles/`` or a
YAML file) and ``overrides`` (a dict papermill or a reader sets: ``{"n_samples": 8}``,
``make figures MODEL=...``). Everything else comes from :data:`hearlib.paper.plan.DEFAULTS`, the
profile and :data:`NOTEBOOK_DEFAULTS`, in that order, then the overrides, so a notebook run by hand
in JupyterLab computes what ``make figures`` computes, and the values live in one place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from hearlib import paths
from hearlib.errors import UserError
from hearlib.paper.catalogue import NOTEBOOKS, REPORT_SETTINGS, REPORTING

__all__ = ["NOTEBOOK_DEFAULTS", "Notebook", "open_notebook", "notebook_params"]

# what the notebooks read beyond the collect's parameters: where `make figures` puts its inputs and
# outputs, and drawing choices (thresholds shown, examples drawn) that decide no record
NOTEBOOK_DEFAULTS = dict(
    data="data/scenes/study-400", store="data/store/study", out="figures", device=None,
    export="build/explore",                            # 00: folder of the exported head sets
    faith_thresholds=[0.5, 0.6, 0.7, 0.8, 0.9],        # 03: Fig. 5
    comp_thresholds=[0.5, 0.4, 0.3, 0.2, 0.1],
    head_threshold=0.1,                                # 04: θ_n above which a head counts (Fig. 10)
    n_show=4,                                          # 06: samples drawn in Fig. 4B
    top_k=3,                                           # 09: the top heads compared across questions
    n_examples=6,                                      # 12: generated answers shown
)


def notebook_params(profile: str | Path = "quick", **overrides) -> dict:
    """The parameters of every notebook under ``profile`` with ``overrides`` (None values ignored)."""
    from hearlib.paper.plan import profile_params

    if Path(str(profile)).suffix and not Path(str(profile)).is_absolute():
        profile = paths.under_root(profile)             # a profile file, as make figures names it
    from hearlib.paper.plan import load_profile

    set_by_profile = load_profile(profile)
    defaults = {k: v for k, v in NOTEBOOK_DEFAULTS.items() if k not in set_by_profile and overrides.get(k) is None}
    params = profile_params(profile, **{**defaults, **overrides})
    return {**NOTEBOOK_DEFAULTS, **params}


@dataclass
class Notebook:
    """One notebook's parameters (``params``, attribute access), its main study and its report."""

    name: str
    params: SimpleNamespace
    study: object
    report: object | None
    _studies: dict = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> dict:
        """HeAr's settings, as every stage that fits θ reads them."""
        p = self.params
        return dict(n_masks=p.n_masks, ratio=p.ratio, seed=p.seed)

    def study_of(self, model) -> object:
        """The study of ``model`` on the notebook's data, with the notebook's settings (the main one
        for the main model; each made once)."""
        from hearlib.paper.study import Study

        if str(model) == str(self.params.model):
            return self.study
        key = str(model)
        if key not in self._studies:
            self._studies[key] = Study(model, self.params.data, **_study_options(vars(self.params)))
        return self._studies[key]

    def record_settings(self, **values) -> None:
        """Settings known only once the data is read (question types, the models found), for the report."""
        self.report.settings.update(values)

    def layers_covered(self) -> str | None:
        """Which layers HeAr covers in each model this notebook studied whose coverage is not the whole
        decoder, read from its records ("mllama: cross-attention layers only, 2 of 4 (layers 1, 3): ...";
        models joined by "; "), or None where every model's whole decoder is covered."""
        from hearlib.paper.plotting import model_label

        notes = {}
        for study in (self.study, *self._studies.values()):
            coverage = study.coverage()
            note = coverage.restriction() if coverage else None
            if note:
                notes.setdefault(model_label(study.model), note)
        return "; ".join(f"{label}: {note}" for label, note in notes.items()) or None

    def finish(self) -> None:
        """Record which layers HeAr covered (every figure's settings state it where not the whole
        decoder), then write the notebook's part of RESULTS.md and figures/README.md."""
        covered = self.layers_covered()
        if covered:
            self.report.save_settings(coverage=covered)
        self.report.write_readme()


def open_notebook(name: str, profile: str | Path = "quick", **overrides) -> Notebook:
    """Notebook ``name`` of :data:`hearlib.paper.catalogue.NOTEBOOKS` opened under ``profile``: its
    parameters, its study (Fig. 9's DomainNet folder for 07) and its report (none for the explorer)."""
    import matplotlib

    matplotlib.use("Agg")        # Report shows each saved figure once; nothing else should draw inline
    if name not in NOTEBOOKS:
        raise UserError(f"unknown notebook {name!r}; the notebooks are {', '.join(NOTEBOOKS)}")
    params = notebook_params(profile, **overrides)
    study = _main_study(name, params)
    report = _report(name, params, study) if name in REPORTING else None
    return Notebook(name, SimpleNamespace(**params), study, report)


def _study_options(p: dict) -> dict:
    return dict(store=p["store"], n_mean_images=p["n_mean_images"], method=p["method"], batch_size=p["batch_size"],
                device=p["device"], profile=p["profile"])


def _main_study(name: str, params: dict):
    """The main model's study; for the notebook that reads the ``domains`` group, on the DomainNet
    folder when there is one (else ``data`` as one domain, and ``params["domains"]`` the ones found)."""
    from hearlib.paper.plan import domain_folder
    from hearlib.paper.study import Study, study_data

    if "domains" not in NOTEBOOKS[name]:
        return Study(params["model"], params["data"], **_study_options(params))
    folder = domain_folder(dict(data=study_data(params["data"]), domain_data=params.get("domain_data")))
    if folder is not None:
        return Study(params["model"], folder, kind="domainnet", domains=params["domains"], **_study_options(params))
    print(f"No DomainNet-layout data (give domain_data / DOMAIN_DATA=): Fig. 9 is drawn on {params['data']} "
          "as one domain.")
    study = Study(params["model"], params["data"], **_study_options(params))
    params["domains"] = sorted({str(item.domain) for item in study.items()})
    return study


def _report(name: str, params: dict, study):
    from hearlib.paper.plotting import model_label
    from hearlib.paper.report import Report

    settings = dict(profile=params["profile"], model=model_label(study.model), model_id=study.model_id,
                    data=study.dataset_id, **{k: params[k] for k in REPORT_SETTINGS[name]}, R=params["n_mean_images"],
                    n_masks=params["n_masks"], ratio=params["ratio"], seed=params["seed"],
                    **({} if params["correct_only"] else {"correct_only": False}))    # every sample studied
    return Report(name, params["out"], settings)
