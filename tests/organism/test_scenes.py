"""The scene generator: determinism, COCO validity (pycocotools), DomainNet layout, CLI."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from hearlib.organism import scenes
from hearlib.errors import UserError


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    scenes.generate(out, 12, seed=5, progress=False)
    return out


def test_scene_depends_only_on_seed_and_index():
    a = scenes.make_scene(3, 7)
    b = scenes.make_scene(3, 7)
    assert a == b
    assert scenes.make_scene(4, 7) != a
    for style in scenes.STYLES:
        x = np.asarray(scenes.render(a, style))
        y = np.asarray(scenes.render(b, style))
        assert x.shape == (scenes.IMAGE_SIZE, scenes.IMAGE_SIZE, 3)
        assert np.array_equal(x, y)
    # the three styles differ from each other
    imgs = [np.asarray(scenes.render(a, s), dtype=np.int16) for s in scenes.STYLES]
    assert np.abs(imgs[0] - imgs[1]).mean() > 5 and np.abs(imgs[1] - imgs[2]).mean() > 5


def test_categories_and_appearance_vary_independently():
    assert len(scenes.CATEGORIES) >= 12 and len(scenes.SUPERCATEGORIES) >= 4
    s = [scenes.make_scene(0, i) for i in range(600)]
    pairs = {(x.category, x.color) for x in s}
    assert len({x.category for x in s}) == len(scenes.CATEGORIES)
    assert len(pairs) > 0.9 * len(scenes.CATEGORIES) * len(scenes.COLORS)
    assert {x.position for x in s} == set(scenes.POSITIONS)
    xs = [x.main.cx for x in s]
    assert min(xs) < 0.3 and max(xs) > 0.7        # the object sits anywhere, not only in the centre
    assert all(1 <= len(x.distractors) <= 3 for x in s)
    # every distractor is smaller than the main object
    assert all(d.scale < x.main.scale for x in s for d in x.distractors)


def test_generation_is_deterministic(generated, tmp_path):
    again = tmp_path / "again"
    scenes.generate(again, 12, seed=5, progress=False)
    for rel in ("coco/annotations/instances.json", "labels.json"):
        assert (generated / rel).read_text() == (again / rel).read_text()
    for f in sorted((generated / "domains").rglob("*.png"))[:6]:
        assert f.read_bytes() == (again / f.relative_to(generated)).read_bytes()


def test_coco_annotations_read_by_pycocotools(generated):
    from pycocotools.coco import COCO
    from pycocotools import mask as mask_utils
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(generated / "coco" / "annotations" / "instances.json"))
    cats = coco.loadCats(coco.getCatIds())
    assert {c["name"] for c in cats} >= set(scenes.CATEGORIES)
    assert all(c["supercategory"] for c in cats)
    assert len(coco.getImgIds()) == 12
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        assert (generated / "coco" / "images" / info["file_name"]).exists()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        main = [a for a in anns if a["main"]]
        assert len(main) == 1 and len(anns) >= 2
        m = main[0]
        assert coco.loadCats(m["category_id"])[0]["name"] == info["main_category"]
        assert m["area"] == max(a["area"] for a in anns)
        x, y, w, h = m["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w > 0 and h > 0
        rle = coco.annToRLE(m)
        seg_area = float(mask_utils.area(rle))
        assert abs(seg_area - m["area"]) < 0.35 * m["area"]       # polygon union vs rendered mask
        assert all(a["iscrowd"] == 0 for a in anns)
        mask = coco.annToMask(m)
        assert mask.shape == (64, 64) and mask.sum() > 0


def test_domainnet_layout_and_labels(generated):
    labels = json.loads((generated / "labels.json").read_text())["images"]
    assert len(labels) == 12 * len(scenes.STYLES)
    for rel, lab in labels.items():
        parts = rel.split("/")
        assert parts[0] == "domains" and parts[1] == lab["style"] and parts[2] == lab["object"]
        assert (generated / rel).exists()
        assert lab["supercategory"] == scenes.SUPERCATEGORY_OF[lab["object"]]
        assert lab["color"] in scenes.COLORS and lab["position"] in scenes.POSITIONS
    assert sorted(p.name for p in (generated / "domains").iterdir()) == sorted(scenes.STYLES)


def test_cli_and_bad_input(tmp_path, capsys):
    from hearlib.cli import main
    assert main(["scenes", "--out", str(tmp_path / "s"), "--n", "2", "--seed", "9"]) == 0
    assert (tmp_path / "s" / "coco" / "annotations" / "instances.json").exists()
    assert main(["scenes", "--out", str(tmp_path / "t"), "--n", "0"]) == 2
    assert "--n" in capsys.readouterr().err
    with pytest.raises(UserError):
        scenes.render(scenes.make_scene(0, 0), "watercolour")


# ----------------------------------------------------------------------------- layout "marked" (issue 27)

def test_marked_scene_depends_only_on_seed_and_index():
    a, b = scenes.make_scene(3, 7, "marked"), scenes.make_scene(3, 7, "marked")
    assert a == b and a.layout == "marked"
    assert scenes.make_scene(4, 7, "marked") != a
    for style in scenes.STYLES:
        assert np.array_equal(np.asarray(scenes.render(a, style)), np.asarray(scenes.render(b, style)))
    # the single layout is untouched by the marked one (same draw for the same seed and index)
    assert scenes.make_scene(3, 7) == scenes.make_scene(3, 7, "single")
    with pytest.raises(UserError):
        scenes.make_scene(3, 7, "crowded")


def test_marked_scene_main_object_is_the_one_beside_the_marker():
    found = [scenes.make_scene(0, i, "marked") for i in range(300)]
    for s in found:
        other = s.others[0]
        assert s.main.category != other.category and s.main.color_name != other.color_name
        assert s.position in scenes.SIDES and s.distractors == []
        near_main = np.hypot(s.marker.cx - s.main.cx, s.marker.cy - s.main.cy) - s.main.scale
        near_other = np.hypot(s.marker.cx - other.cx, s.marker.cy - other.cy) - other.scale
        assert near_main < near_other
        assert abs(s.main.scale - other.scale) <= 0.06        # similar sizes: size does not tell
    # which of the two is main is not fixed by side or drawing order
    assert 0.3 < np.mean([s.main.cx < s.others[0].cx for s in found]) < 0.7
    assert {s.main.category for s in found} == set(scenes.CATEGORIES)


def test_marked_generation_is_deterministic_and_labelled(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        scenes.generate(out, 6, seed=9, progress=False, layout="marked")
    labels = json.loads((first / "labels.json").read_text())
    assert labels["layout"] == "marked"
    for rel, entry in labels["images"].items():
        scene = scenes.make_scene(9, entry["scene_id"], "marked")
        assert entry["object"] == scene.main.category and entry["color"] == scene.main.color_name
        assert (first / rel).read_bytes() == (second / rel).read_bytes()
    coco = json.loads((first / "coco/annotations/instances.json").read_text())
    assert sum(a.get("main", False) for a in coco["annotations"]) == 6
    assert (first / "labels.json").read_text() == (second / "labels.json").read_text()
