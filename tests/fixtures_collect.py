"""Fixtures for the collection tests: a tiny random-weight LLaVA and COCO-format datasets whose
labels are chosen so that the tiny model answers some samples correctly and others wrongly.

A random model answers whatever its weights say; :func:`make_coco` asks it first and labels a
"correct" image with the word it predicts (so the run keeps it) and a "wrong" one with another
word (so the run skips it). Pytest loads this module as a plugin from the test modules
(``pytest_plugins``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

WRONG_WORDS = ("zebra", "giraffe", "elephant")


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    from hearlib.families.tiny import build_tiny

    return Path(build_tiny("llava", tmp_path_factory.mktemp("collect-tiny-llava")))


@pytest.fixture(scope="session")
def tiny_engine(tiny_llava):
    from hearlib.method.loading import load_engine

    return load_engine(tiny_llava)


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is many times faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    return env


def _random_image(rng, size=48):
    from PIL import Image

    return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8"))


def make_coco(root: Path, engine, n_correct: int, n_wrong: int = 0, *, no_annotation: int = 0,
              broken: int = 0, multi_token: int = 0, seed: int = 0, n_reference: int = 3) -> dict:
    """A COCO-format folder ``root/annotations/instances.json`` + ``root/images``.

    Samples (in image-id order): ``n_correct`` images labelled with the tiny model's own
    answer, ``n_wrong`` labelled with another word, ``multi_token`` labelled with a two-word
    category whose first word is the model's answer ("<answer> red"), ``broken`` truncated PNG
    files (annotated), ``no_annotation`` images without any annotation, and finally
    ``n_reference`` extra correct images at the end (the means' reference images). Returns the
    image ids of each group."""
    rng = np.random.default_rng(seed)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    plan = (["correct"] * n_correct + ["wrong"] * n_wrong + ["multi"] * multi_token + ["broken"] * broken
            + ["none"] * no_annotation + ["reference"] * n_reference)
    # interleave the special cases between correct samples so that they are not all at the end
    order = sorted(range(len(plan)), key=lambda i: (plan[i] == "reference", (i * 7919) % len(plan)))
    plan = [plan[i] for i in order]
    categories: dict[str, int] = {}
    images, annotations, groups = [], [], {}
    for index, role in enumerate(plan):
        image_id = index + 1
        while True:
            image = _random_image(rng)
            record = engine.record(engine.prepare(image, answer="dog"))
            word = engine.tokenizer.convert_ids_to_tokens([record.predicted_id])[0]
            if word.isalpha() and word.lower() not in WRONG_WORDS:
                break
        label = {"correct": word, "reference": word, "broken": word, "none": word,
                 "wrong": next(w for w in WRONG_WORDS if w != word), "multi": f"{word} red"}[role]
        name = f"{image_id:06d}.png"
        image.save(images_dir / name)
        if role == "broken":
            data = (images_dir / name).read_bytes()
            (images_dir / name).write_bytes(data[: len(data) // 3])
        images.append({"id": image_id, "file_name": name, "width": 48, "height": 48})
        groups.setdefault(role, []).append(str(image_id))
        if role == "none":
            continue
        cat = categories.setdefault(label, len(categories) + 1)
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                            "bbox": [4, 4, 40, 40], "area": 1600.0, "iscrowd": 0,
                            "segmentation": [[4, 4, 44, 4, 44, 44, 4, 44]]})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "thing"} for name, i in categories.items()]}
    (root / "annotations" / "instances.json").write_text(json.dumps(coco))
    return groups


SAMPLE_COUNTS = ("n_samples", "n_size_samples", "n_tsne_samples", "n_size_tsne_samples", "n_image_samples",
                 "n_ratio_samples", "n_prompt_samples", "n_domain_samples", "n_lens_samples", "n_more")


def run(model, data, out, stages=("attribution",), *, n_samples: int = 5, n_masks: int = 64, means_file=None,
        retry_failed: bool = True, **params) -> dict:
    """``hearlib run`` in this process: ``stages`` for the first ``n_samples`` samples of every selection."""
    from hearlib.paper.collect import run_plan
    from hearlib.paper.plan import profile_params

    p = profile_params(None, model=str(model), data=str(data), n_masks=n_masks, n_mean_images=3, batch_size=32,
                       ratios=[0.5], **{k: n_samples for k in SAMPLE_COUNTS}, **params)
    return run_plan(p, stages, out, progress=False, means_file=means_file, retry_failed=retry_failed)


def tiny_model_files(family: str, tiny_model_dir, random_images, folder: Path) -> tuple:
    """(engine, model folder, image file, means file) of a tiny model of ``family``: one random image
    saved as a file and the mean keys/values of four others, as the commands read them."""
    from hearlib.method.loading import load_engine
    from hearlib.method.means import compute_means

    model = str(tiny_model_dir(family))
    engine = load_engine(model)
    images = random_images(5, seed=1)
    image = folder / "image.png"
    images[0].save(image)
    compute_means(engine, images[1:], progress=False).save(folder / "means.safetensors")
    return engine, model, image, folder / "means.safetensors"
