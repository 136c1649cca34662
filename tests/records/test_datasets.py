"""Loaders: COCO (pycocotools, single-main-object rule) and DomainNet layout."""
from __future__ import annotations

import shutil

import pytest

from hearlib.organism import scenes
from hearlib.records.datasets import ImageRecord, load_coco, load_domainnet, main_object
from hearlib.errors import UserError
from hearlib.paths import SHARED_COCO_TINY

needs_coco_tiny = pytest.mark.skipif(
    not (SHARED_COCO_TINY / "annotations" / "instances_val2017.json").exists(),
    reason=f"real COCO annotations not found at {SHARED_COCO_TINY} (the shared coco-tiny folder)")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    scenes.generate(out, 10, seed=11, progress=False)
    return out


def test_main_object_rule_synthetic_cases():
    big = {"id": 1, "category_id": 1, "area": 1000, "iscrowd": 0}
    assert main_object([big], 100, 100) is big
    assert main_object([dict(big, area=400)], 100, 100) is None                       # under 5% of the image
    other = {"id": 2, "category_id": 2, "area": 600, "iscrowd": 0}
    assert main_object([big, other], 100, 100) is None                                 # rival of another class
    assert main_object([big, dict(other, area=400)], 100, 100) is big
    same = {"id": 3, "category_id": 1, "area": 900, "iscrowd": 0}
    assert main_object([big, same], 100, 100) is big                                   # same class is no rival
    crowd = {"id": 4, "category_id": 2, "area": 5000, "iscrowd": 1}
    assert main_object([big, crowd], 100, 100) is None                                 # big crowd of another class
    assert main_object([crowd], 100, 100) is None


@needs_coco_tiny
@pytest.mark.parametrize("split", ["val2017", "train2017"])
def test_single_main_object_rule_on_real_coco(split):
    from pycocotools.coco import COCO
    import contextlib
    import io
    kept = load_coco(SHARED_COCO_TINY, split=split)
    every = load_coco(SHARED_COCO_TINY, split=split, single_main_object=False)
    assert 0 < len(kept) < len(every) <= 50
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(SHARED_COCO_TINY / "annotations" / f"instances_{split}.json"))
    names = {c["id"]: c for c in coco.loadCats(coco.getCatIds())}
    for r in kept:
        assert isinstance(r, ImageRecord) and r.path.exists()
        info = coco.loadImgs(int(r.image_id))[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=int(r.image_id), iscrowd=None))
        main = max((a for a in anns if not a["iscrowd"]), key=lambda a: a["area"])
        assert r.label == names[main["category_id"]]["name"]
        assert r.supercategory == names[main["category_id"]]["supercategory"]
        assert main["area"] >= 0.05 * info["width"] * info["height"]
        rivals = [a for a in anns if a["category_id"] != main["category_id"]]
        assert all(2 * a["area"] <= main["area"] for a in rivals)
    # every rejected image breaks the rule
    rejected = {r.image_id for r in every} - {r.image_id for r in kept}
    assert rejected
    for img_id in rejected:
        info = coco.loadImgs(int(img_id))[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=int(img_id), iscrowd=None))
        assert main_object(anns, info["width"], info["height"]) is None
    # the annotation file alone finds its images too
    same = load_coco(SHARED_COCO_TINY / "annotations" / f"instances_{split}.json")
    assert [r.image_id for r in same] == [r.image_id for r in kept]


def test_load_coco_on_generated_scenes(generated):
    recs = load_coco(generated)
    assert recs and all(r.path.exists() and r.domain == "real" for r in recs)
    assert all(r.label in scenes.CATEGORIES for r in recs)
    assert {"color", "position", "style"} <= set(recs[0].extra)


def test_load_domainnet(generated, tmp_path):
    recs = load_domainnet(generated)
    assert len(recs) == 10 * len(scenes.STYLES)
    assert {r.domain for r in recs} == set(scenes.STYLES)
    assert all(r.extra["style"] == r.domain and r.supercategory for r in recs)
    sketch = load_domainnet(generated / "domains", domains=["sketch"])
    assert len(sketch) == 10 and all(r.extra == {} for r in sketch)     # plain layout: no labels file
    one = recs[0].label
    assert {r.label for r in load_domainnet(generated, classes=[one])} == {one}
    # any <domain>/<class>/<image> folder
    plain = tmp_path / "plain"
    (plain / "photo" / "dog").mkdir(parents=True)
    shutil.copy(recs[0].path, plain / "photo" / "dog" / "a.png")
    got = load_domainnet(plain)
    assert [(r.label, r.domain, r.supercategory) for r in got] == [("dog", "photo", None)]


def test_clear_errors(tmp_path, generated):
    with pytest.raises(UserError, match="does not exist"):
        load_domainnet(tmp_path / "nowhere")
    with pytest.raises(UserError, match="does not exist"):
        load_coco(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no COCO annotation file"):
        load_coco(tmp_path / "empty")
    with pytest.raises(UserError, match="no images"):
        load_domainnet(tmp_path / "empty")
    with pytest.raises(UserError, match="domain"):
        load_domainnet(generated, domains=["quickdraw"])


def _write_coco_2017(root, split, images, annotations, categories):
    """A COCO 2017 layout: ``annotations/instances_<split>.json`` beside ``<split>/``."""
    import json

    from PIL import Image

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    for info in images:
        Image.new("RGB", (info["width"], info["height"]), (90, 60, 30)).save(root / split / info["file_name"])
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))


def test_coco_2017_layout_with_several_words_and_several_instances(tmp_path):
    categories = [{"id": 11, "name": "fire hydrant", "supercategory": "outdoor"},
                  {"id": 88, "name": "teddy bear", "supercategory": "indoor"},
                  {"id": 17, "name": "cat", "supercategory": "animal"}]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 100, "height": 80} for i in (7, 3, 5)]

    def ann(i, image_id, cat, area, crowd=0):
        return {"id": i, "image_id": image_id, "category_id": cat, "area": area, "iscrowd": crowd,
                "bbox": [0, 0, 10, 10], "segmentation": [[0, 0, 10, 0, 10, 10]]}
    annotations = [ann(1, 7, 11, 2000), ann(2, 7, 11, 1500), ann(3, 7, 11, 900), ann(4, 7, 17, 900),  # kept
                   ann(5, 3, 88, 3000),                                                           # kept
                   ann(6, 5, 17, 2000), ann(7, 5, 88, 1200)]                                      # rival
    _write_coco_2017(tmp_path, "train2017", images, annotations, categories)
    records = load_coco(tmp_path)                     # no split, no instances.json: found by layout
    assert [(r.image_id, r.label, r.supercategory) for r in records] == [
        ("3", "teddy bear", "indoor"), ("7", "fire hydrant", "outdoor")]
    assert records[1].extra["n_annotations"] == 4 and records[1].extra["annotation_id"] == 1
    assert records[1].path == tmp_path / "train2017" / "000000000007.jpg" and records[1].path.exists()
    assert load_coco(tmp_path, split="train2017")[1].label == "fire hydrant"
    assert load_coco(tmp_path / "annotations" / "instances_train2017.json")[0].path.parent == tmp_path / "train2017"
    # with a validation split beside it, the validation split is the default
    _write_coco_2017(tmp_path, "val2017", images[:1], annotations[:4], categories)
    assert [r.image_id for r in load_coco(tmp_path)] == ["7"]
    assert [r.image_id for r in load_coco(tmp_path, split="train2017")] == ["3", "7"]
    with pytest.raises(UserError, match="instances_test2017.json"):
        load_coco(tmp_path, split="test2017")


@needs_coco_tiny
def test_real_coco_2017_folder_without_split():
    import json

    from hearlib.records.datasets import coco_splits

    assert coco_splits(SHARED_COCO_TINY) == ["val2017", "train2017"]
    default = load_coco(SHARED_COCO_TINY)
    assert [(r.image_id, r.label, r.path) for r in default] == [
        (r.image_id, r.label, r.path) for r in load_coco(SHARED_COCO_TINY, split="val2017")]
    assert all(r.path.parent == SHARED_COCO_TINY / "val2017" for r in default)
    # category names of several words are kept as COCO writes them
    names = {c["name"] for c in json.loads(
        (SHARED_COCO_TINY / "annotations" / "instances_val2017.json").read_text())["categories"]}
    several = [r.label for r in default if " " in r.label]
    assert several and set(several) <= names
    assert any(r.extra["n_annotations"] > 1 for r in default)


@needs_coco_tiny
def test_real_coco_train_split_alone_is_found(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").symlink_to(
        SHARED_COCO_TINY / "annotations" / "instances_train2017.json")
    (tmp_path / "train2017").symlink_to(SHARED_COCO_TINY / "train2017")
    got = load_coco(tmp_path)
    want = load_coco(SHARED_COCO_TINY, split="train2017")
    assert got and [(r.image_id, r.label) for r in got] == [(r.image_id, r.label) for r in want]
