"""Image-token geometry (hearlib.families.geometry) against what each family's model actually does.

The spatial tests make the vision tower local (every attention output projection of the
vision encoder zeroed, so each layer is per token) and change one rectangle of the image:
exactly the tokens whose cells the layout puts inside the rectangle must change, and none
whose cells lie outside it. The token features are read where the model uses them: the
decoder's ``inputs_embeds`` at ``sample.image_positions``."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hearlib.method.engine import Engine
from hearlib.errors import UserError
from hearlib.families.geometry import Panel, TokenLayout, draw_over_image, image_token_layout, to_maps
from hearlib.method.loading import load_engine
from hearlib.method.tokenprobes import decoder_input_tokens, decoder_inputs
from hearlib.families.tiny import FAMILIES, PROCESSED_SIZE

from .geometry_helpers import make_timm_tower_local

HUB = Path(__file__).resolve().parents[1] / "data" / "hub"     # the real hub files this project ships (tests/data/hub/NOTICE.md)
# LLaVA-1.6 (vicuna) anyres pinpoints, as in llava-hf/llava-v1.6-vicuna-7b-hf
VICUNA_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def image_features(engine, sample) -> torch.Tensor:
    """[P_img, d] the embeddings the decoder receives at the image positions (decoder not run), joined with the
    features it adds there inside (Granite 4 Vision zeroes those embeddings and passes its image as
    ``deepstack_features``, one [P_img, d] tensor per decoder layer); in a cross-attention model the
    ``cross_attention_states`` its cross-attention layers read; in an encoder-decoder the embeddings the encoder
    receives there (its output mixes every position)."""
    if engine.family.encoder_decoder:
        return encoder_inputs(engine, sample)[0, sample.image_positions].float()
    if engine.family.cross_attention:
        return torch.from_numpy(decoder_input_tokens(engine, sample))
    inputs = decoder_inputs(engine, sample)
    injected = list((inputs.get("deepstack_features") or {}).values())
    return torch.cat([inputs["inputs_embeds"][0, sample.image_positions], *injected], -1).float()


def encoder_inputs(engine, sample) -> torch.Tensor:
    """[1, S, d] the ``inputs_embeds`` an encoder-decoder's encoder receives: the image features written over the
    image tokens' embeddings."""
    captured = {}
    handle = engine.model.get_encoder().register_forward_pre_hook(
        lambda module, args, kwargs: captured.update(kwargs), with_kwargs=True)
    try:
        with torch.no_grad():
            engine.model(**sample.inputs, use_cache=False)
    finally:
        handle.remove()
    return captured["inputs_embeds"]


ATTENTION_OUT = ("self_attn.out_proj", "attn.proj", "attention.projection_layer", "self_attn.projection_layer",
                 "attention.o_proj", "attention.out_proj", "self_attn.o_proj",
                 "self_attn.projection")          # BLIP-2's vision attention (Blip2Attention.projection)


def make_vision_local(model) -> None:
    """Zero each vision layer's attention output projection: every layer becomes per token."""
    towers = ("vision_tower", "image_tower", "vision_model", "vision_encoder", "visual")
    inner = getattr(model, "model", model)          # Nemotron-H Omni's top-level class holds its tower itself
    tower = next((getattr(inner, name) for name in towers if getattr(inner, name, None) is not None), None)
    if tower is None and isinstance(getattr(inner, "vision_embed_tokens", None), torch.nn.Linear):
        return                                      # Fuyu: each patch embedded alone by one Linear, already local
    if hasattr(tower, "timm_model") and not hasattr(tower.timm_model, "blocks"):   # staged convolutional towers
        return make_timm_tower_local(tower.timm_model)     # (Gemma 3n's, FastVLM's); PerceptionLM's ViT goes on below
    second = getattr(inner, "high_res_vision_model", None)     # DeepSeek-VL hybrid's SAM tower
    layers = [(n, m) for t in (tower, second) if t is not None for n, m in t.named_modules()
              if re.fullmatch(r"(.+\.)?(layers|layer|blocks)\.\d+", n)]
    assert layers
    with torch.no_grad():
        for layer_name, layer in layers:
            projections = [m for n, m in layer.named_modules()
                           if isinstance(m, torch.nn.Linear) and f"{layer_name}.{n}".endswith(ATTENTION_OUT)]
            # Florence-2's DaViT stage: per block a window attention and a channel attention (which mixes every token)
            davit_blocks = [n for n, _ in layer.named_modules() if n.endswith("channel_block")]
            assert len(projections) == (2 * len(davit_blocks) or 1), (layer_name, len(projections))
            # and around each attention a residual 3 × 3 depthwise convolution (conv1, conv2: position encodings)
            convolutions = [m for n, m in layer.named_modules()
                            if davit_blocks and isinstance(m, torch.nn.Conv2d) and n.endswith(("conv1", "conv2"))]
            for projection in projections + convolutions:
                projection.weight.zero_()
                if projection.bias is not None:
                    projection.bias.zero_()


def random_image(size, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def invert(image: Image.Image, box) -> Image.Image:
    """``image`` with the pixels inside ``box`` (x0, y0, x1, y1) inverted."""
    pixels = np.asarray(image).copy()
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 255 - pixels[y0:y1, x0:x1]
    return Image.fromarray(pixels)


def expected_change(layout: TokenLayout, box, margin: float):
    """(tokens whose cell lies inside ``box``, tokens whose cell lies outside ``box`` + margin)."""
    x0, y0, x1, y1 = box
    inside, outside = [], []
    for panel in layout.panels:
        cells = panel.cell_boxes()
        for (r, c), token in np.ndenumerate(panel.tokens):
            cx0, cy0, cx1, cy1 = cells[r, c]
            if cx0 >= x0 - 1e-6 and cy0 >= y0 - 1e-6 and cx1 <= x1 + 1e-6 and cy1 <= y1 + 1e-6:
                inside.append(int(token))
            elif cx1 <= x0 - margin or cx0 >= x1 + margin or cy1 <= y0 - margin or cy0 >= y1 + margin:
                outside.append(int(token))
    return np.array(inside), np.array(outside)


def all_indices(layout: TokenLayout) -> np.ndarray:
    """Every index the layout names (panels, then non-spatial), sorted."""
    parts = [p.tokens[p.tokens >= 0].ravel() for p in layout.panels]
    parts += [np.asarray(v, dtype=np.int64) for v in layout.non_spatial.values()]
    return np.sort(np.concatenate(parts))


# ---------------------------------------------------------------------------------------
# engines
# ---------------------------------------------------------------------------------------
_ENGINES: dict = {}


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir):
    """``tiny_engine(family, resolution=None, local=False, **image_processor_attributes)``."""

    def get(family, resolution=None, local=False, **image_processor):
        key = (family, resolution, local, tuple(sorted(image_processor.items())))
        if key not in _ENGINES:
            engine = load_engine(tiny_model_dir(family), resolution=resolution)
            for name, value in image_processor.items():
                setattr(engine.processor.image_processor, name, value)
            if local:
                make_vision_local(engine.model)
            _ENGINES[key] = engine
        return _ENGINES[key]

    yield get
    _ENGINES.clear()


def _cut(config):
    text, vision = config.text_config, config.vision_config
    text.num_hidden_layers = 1
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:1]
    if hasattr(vision, "depth"):
        vision.depth = 1
    else:
        vision.num_hidden_layers = 1
    return config


@pytest.fixture(scope="module")
def hub_engine():
    """``hub_engine(folder)``: random weights from a real hub config (1 text, 1 vision layer),
    the real processor, the vision tower made local; resolution = hearlib's for the family."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from hearlib.method.loading import FAMILIES as MODEL_FAMILIES

    built = {}

    def get(folder):
        if folder not in built:
            path = HUB / folder
            config = _cut(AutoConfig.from_pretrained(path))
            torch.manual_seed(0)
            model = AutoModelForImageTextToText.from_config(config).eval()
            make_vision_local(model)
            built[folder] = Engine(model, AutoProcessor.from_pretrained(path),
                                   resolution=MODEL_FAMILIES[config.model_type][1])
        return built[folder]

    yield get
    built.clear()


@pytest.fixture(scope="module")
def paper_next_engine(tiny_model_dir):
    """The tiny LLaVA-NeXT decoder with LLaVA-1.6's vision geometry: CLIP 336 px, patch 14,
    the vicuna pinpoints, the 336 px processor (narrow widths, one vision layer)."""
    import transformers as tf

    tiny = tiny_model_dir("llava_next")
    config = tf.AutoConfig.from_pretrained(tiny)
    vision = config.vision_config
    vision.image_size, vision.patch_size, vision.num_hidden_layers = 336, 14, 1
    config.image_grid_pinpoints = VICUNA_PINPOINTS
    torch.manual_seed(0)
    model = tf.LlavaNextForConditionalGeneration(config).eval()
    make_vision_local(model)
    small = tf.AutoProcessor.from_pretrained(tiny)
    clip = dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_center_crop=True,
                resample=3, image_mean=small.image_processor.image_mean, image_std=small.image_processor.image_std)
    processor = tf.LlavaNextProcessor(
        image_processor=tf.LlavaNextImageProcessor(image_grid_pinpoints=VICUNA_PINPOINTS, **clip),
        tokenizer=small.tokenizer, patch_size=14, vision_feature_select_strategy="default",
        chat_template=small.chat_template, image_token="<image>", num_additional_image_tokens=1)
    return Engine(model, processor, resolution=(336, 336))


@pytest.fixture(scope="module")
def paper_internvl_engine(tiny_model_dir):
    """The tiny InternVL decoder with InternVL2.5's vision geometry: 448 px tiles, patch 14,
    pixel shuffle 0.5 (256 tokens a tile), up to 12 tiles + thumbnail (narrow widths)."""
    import transformers as tf

    tiny = tiny_model_dir("internvl")
    config = tf.AutoConfig.from_pretrained(tiny)
    vision = config.vision_config
    vision.image_size, vision.patch_size, vision.num_hidden_layers = [448, 448], [14, 14], 1
    config.image_seq_length = 256
    torch.manual_seed(0)
    model = tf.InternVLForConditionalGeneration(config).eval()
    make_vision_local(model)
    small = tf.AutoProcessor.from_pretrained(tiny)
    ip = small.image_processor
    image_processor = tf.GotOcr2ImageProcessor(
        size={"height": 448, "width": 448}, crop_to_patches=False, min_patches=1, max_patches=12, do_resize=True,
        resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=ip.image_mean,
        image_std=ip.image_std, do_convert_rgb=True)
    processor = tf.InternVLProcessor(image_processor=image_processor, tokenizer=small.tokenizer,
                                     video_processor=small.video_processor, image_seq_length=256,
                                     chat_template=small.chat_template)
    return Engine(model, processor, resolution=(448, 448))


# ---------------------------------------------------------------------------------------
# every family: the layout accounts for every image token
# ---------------------------------------------------------------------------------------
# (family, engine resolution, image size); None = the family's default fixed resolution
COUNT_CASES = [(f, None, (48, 48)) for f in FAMILIES] + [
    ("llava", None, (64, 32)),           # LLaVA-1.5 keeps the raw size: center crop
    ("llava_next", (64, 16), (64, 16)),  # anyres, wide: unpadded high-res grid
    ("llava_next", (200, 48), (200, 48)),
    ("qwen2_vl", (200, 48), (200, 48)),  # dynamic resolution, non-square grid
    ("qwen2_5_vl", (48, 120), (48, 120)),
]


@pytest.mark.parametrize("family,resolution,size", COUNT_CASES)
def test_layout_names_every_image_token_once_within_the_image(tiny_engine, family, resolution, size):
    engine = tiny_engine(family, resolution)
    sample = engine.prepare(random_image(size), answer="dog")
    layout = image_token_layout(engine, sample)
    assert layout.n_tokens == sample.n_image
    np.testing.assert_array_equal(all_indices(layout), np.arange(sample.n_image))
    width, height = engine.resolution or size
    assert layout.image_size == (width, height) == sample.image_size
    for panel in layout.panels:
        x0, y0, x1, y1 = panel.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (panel.name, panel.box)
        assert (panel.tokens >= 0).all()


def test_llava_center_crop_box(tiny_engine):
    """CLIP processor of the tiny LLaVA: shortest edge 32, center crop 32×32."""
    engine = tiny_engine("llava")
    layout = image_token_layout(engine, engine.prepare(random_image((64, 32)), answer="dog"))
    assert [p.box for p in layout.panels] == [(16.0, 0.0, 48.0, 32.0)]    # (64 - 32) / 2 = 16
    layout = image_token_layout(engine, engine.prepare(random_image((200, 48)), answer="dog"))
    # 200×48 -> 133×32 (int(32·200/48)), crop left int((133 - 32)/2) = 50 -> 50·200/133 in the input
    np.testing.assert_allclose(layout.panels[0].box, (50 * 200 / 133, 0, 82 * 200 / 133, 48))


# ---------------------------------------------------------------------------------------
# LLaVA-NeXT: newline tokens where the model puts image_newline
# ---------------------------------------------------------------------------------------
def newline_rows(engine, sample) -> np.ndarray:
    feats = image_features(engine, sample)
    newline = engine.model.model.image_newline.detach().float()
    return np.flatnonzero((feats == newline).all(-1).numpy())


@pytest.mark.parametrize("resolution", [None, (64, 16), (200, 48), (48, 200)])
def test_llava_next_newlines_are_the_models_image_newline_rows(tiny_engine, resolution):
    engine = tiny_engine("llava_next", resolution)
    sample = engine.prepare(random_image((48, 48)), answer="dog")
    layout = image_token_layout(engine, sample)
    rows = newline_rows(engine, sample)
    assert rows.size > 0
    np.testing.assert_array_equal(layout.non_spatial["newline"], rows)
    high = layout.panel("high-res")
    assert high.shape[0] == rows.size
    # each high-res row ends right before its newline
    np.testing.assert_array_equal(high.tokens[:, -1] + 1, rows)


def test_llava_next_paper_geometry_336(paper_next_engine):
    """LLaVA-1.6 at hearlib's 336×336: base 24×24, pinpoint 336×672 unpadded to 24×24 + 24 newlines."""
    engine = paper_next_engine
    sample = engine.prepare(random_image((336, 336)), answer="dog")
    layout = image_token_layout(engine, sample)
    assert sample.n_image == 576 + 24 * 25 == 1176
    assert [(p.name, p.shape) for p in layout.panels] == [("base", (24, 24)), ("high-res", (24, 24))]
    np.testing.assert_array_equal(layout.non_spatial["newline"], newline_rows(engine, sample))
    np.testing.assert_array_equal(layout.non_spatial["newline"], 576 + 24 + 25 * np.arange(24))
    assert layout.panel("high-res").box == (0.0, 0.0, 336.0, 336.0)


def test_internvl_paper_geometry_448(paper_internvl_engine):
    """InternVL2.5 at hearlib's 448×448: one tile of 16×16 (the processor's crop_to_patches
    default is on, but a square 448 image keeps a 1×1 canvas and gets no thumbnail)."""
    engine = paper_internvl_engine
    layout = check_rectangles(engine, (448, 448), [(0, 0, 224, 112), (336, 224, 448, 448)])
    assert layout.n_tokens == 256
    assert [(p.name, p.shape, p.box) for p in layout.panels] == [("base", (16, 16), (0.0, 0.0, 448.0, 448.0))]


def test_internvl_paper_geometry_wide_image_tiles(paper_internvl_engine):
    """A 896×448 input (engine resolution off): 2 tiles of 448 + a thumbnail, 3 × 256 tokens."""
    engine = paper_internvl_engine
    engine.resolution, saved = None, engine.resolution
    try:
        layout = check_rectangles(engine, (896, 448), [(0, 0, 448, 112), (672, 224, 896, 448)], margin=8)
    finally:
        engine.resolution = saved
    assert layout.n_tokens == 768
    assert [(p.name, p.shape, p.box) for p in layout.panels] == [
        ("tile 0,0", (16, 16), (0.0, 0.0, 448.0, 448.0)), ("tile 0,1", (16, 16), (448.0, 0.0, 896.0, 448.0)),
        ("thumbnail", (16, 16), (0.0, 0.0, 896.0, 448.0))]


# ---------------------------------------------------------------------------------------
# Qwen: rows × cols = image_grid_thw[1:] // spatial_merge_size
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("resolution", [None, (200, 48), (48, 120)])
def test_qwen_grid_is_image_grid_thw_over_merge(tiny_engine, family, resolution):
    engine = tiny_engine(family, resolution)
    sample = engine.prepare(random_image((48, 48)), answer="dog")
    layout = image_token_layout(engine, sample)
    t, h, w = sample.inputs["image_grid_thw"][0].tolist()
    merge = engine.processor.image_processor.merge_size
    assert t == 1 and [p.shape for p in layout.panels] == [(h // merge, w // merge)]
    np.testing.assert_array_equal(layout.panels[0].tokens.ravel(), np.arange(h * w // merge ** 2))


# ---------------------------------------------------------------------------------------
# Spatial correctness: the tokens of a changed rectangle are the ones the layout puts there
# ---------------------------------------------------------------------------------------
def check_rectangles(engine, size, rectangles, margin=0.0):
    base = random_image(size, seed=3)
    sample = engine.prepare(base, answer="dog")
    layout = image_token_layout(engine, sample)
    reference = image_features(engine, sample)
    n_inside = 0
    for box in rectangles:
        changed = image_features(engine, engine.prepare(invert(base, box), answer="dog"))
        delta = (changed - reference).abs().amax(-1).numpy()
        inside, outside = expected_change(layout, box, margin)
        assert outside.size > 0, box
        n_inside += inside.size
        if inside.size == 0:          # a rectangle outside every panel reaches no token
            assert delta.max() == 0, box
            continue
        assert (delta[inside] > 1e-3 * delta.max()).all(), (box, np.flatnonzero(delta[inside] <= 1e-3 * delta.max()))
        assert (delta[outside] <= 1e-6 * delta.max()).all(), (box, outside[delta[outside] > 1e-6 * delta.max()])
        spatial = np.setdiff1d(np.arange(layout.n_tokens), layout.non_spatial_indices)
        pooled = np.asarray(layout.non_spatial.get("mean", ()), dtype=np.int64)   # Florence-2's: the grid's mean
        assert np.setdiff1d(np.flatnonzero(delta > 1e-6 * delta.max()), np.union1d(spatial, pooled)).size == 0
        assert (delta[pooled] > 1e-3 * delta.max()).all()
    assert n_inside > 0
    return layout


# a wide and a tall rectangle, each in one corner: a row/column swap or a flip moves them
def corner_rectangles(width, height):
    return [(0, 0, width // 2, height // 4), (3 * width // 4, height // 2, width, height)]


# pixels beyond its cell that a token also reads, where convolutions after the tower mix neighbouring cells
NEIGHBOUR_MARGIN = {"pp_chart2table": 4,    # GOT-OCR2's 3 × 3 neck and two stride-2 3 × 3 convolutions: a cell
                    # SAM's 3 × 3 neck, a bilinear resize × 4 and two stride-2 3 × 3 convolutions: three cells
                    "deepseek_vl_hybrid": 24,
                    # SAM's 3 × 3 neck and two stride-2 3 × 3 convolutions over 1 px patches: a 4 px cell
                    "unlimited_ocr": 4,
                    # DaViT's 7 × 7 stride-4 and 3 × 3 stride-2 patch convolutions: 7 px beyond an 8 px cell
                    "florence2": 8,
                    # the image processor's bicubic resize of the 64 px image to its 2 × 2 canvas of 64 px tiles
                    # (128 px): each canvas pixel reads source pixels up to 1.5 px away, so a change reaches the
                    # tile cells beside it (test_perception_lm_tokens_are_exact_under_nearest_resampling: none)
                    "perception_lm": 2}
# families whose image tokens no zeroed projection makes local, each checked in its own lineage test instead
NOT_LOCAL = {"apertus1p5": "discrete VQ codes: GroupNorms over the whole image and an argmax "
                           "(tests/families/test_apertus1p5.py checks the grid with the encoder made local)",
             "emu3": "discrete VQ codes: GroupNorms over the whole image and an argmin "
                     "(tests/families/test_emu3.py checks the grid with the encoder made local)"}


@pytest.mark.parametrize("family", FAMILIES)
def test_tokens_of_a_changed_rectangle_are_where_the_layout_puts_them(tiny_engine, family):
    if family in NOT_LOCAL:
        pytest.skip(f"{family}: {NOT_LOCAL[family]}")
    side = PROCESSED_SIZE[family][0]          # the size the image processor brings it to: no resampling
    engine = tiny_engine(family, (side, side), local=True)
    layout = image_token_layout(engine, engine.prepare(random_image((side, side)), answer="dog"))
    if not layout.panels:                     # a resampler's latents (Idefics2, Aria) lie nowhere on the image
        assert np.array_equal(layout.non_spatial_indices, np.arange(layout.n_tokens))
        pytest.skip(f"{family}: every image token is non-spatial; no rectangle to check")
    check_rectangles(engine, (side, side), corner_rectangles(side, side), margin=NEIGHBOUR_MARGIN.get(family, 0.0))


def test_llava_center_crop_tokens_follow_the_crop(tiny_engine):
    """64×32 input, crop x 16..48: a change left of the crop reaches no token; one at x 16..32,
    y 0..8 reaches tokens (0, 0) and (0, 1) only."""
    engine = tiny_engine("llava", None, local=True)
    layout = check_rectangles(engine, (64, 32), [(0, 0, 16, 32), (16, 0, 32, 8), (48, 24, 64, 32)])
    assert layout.panels[0].box == (16.0, 0.0, 48.0, 32.0)


def test_llava_next_wide_image_high_res_tokens(tiny_engine):
    """64×16: pinpoint 32×64 with the image pasted at y 8..24; high-res grid 2×8 after unpad,
    8 px cells, no resampling there (the base grid is resampled: 4 px margin)."""
    engine = tiny_engine("llava_next", (64, 16), local=True)
    layout = check_rectangles(engine, (64, 16), [(0, 0, 32, 16), (48, 8, 64, 16)], margin=4)
    high = layout.panel("high-res")
    assert high.shape == (2, 8) and high.box == (0.0, 0.0, 64.0, 16.0)


def test_internvl_tiles_and_thumbnail(tiny_engine):
    """crop_to_patches with a 128×64 image: two 64×64 tiles side by side + a thumbnail."""
    engine = tiny_engine("internvl", (128, 64), local=True, crop_to_patches=True, max_patches=4)
    layout = check_rectangles(engine, (128, 64), [(0, 0, 64, 16), (96, 32, 128, 64)], margin=6)
    assert [(p.name, p.shape, p.box) for p in layout.panels] == [
        ("tile 0,0", (4, 4), (0.0, 0.0, 64.0, 64.0)), ("tile 0,1", (4, 4), (64.0, 0.0, 128.0, 64.0)),
        ("thumbnail", (4, 4), (0.0, 0.0, 128.0, 64.0))]
    np.testing.assert_array_equal(layout.panel("thumbnail").tokens.ravel(), 32 + np.arange(16))


def test_perception_lm_tokens_are_exact_under_nearest_resampling(tiny_engine):
    """A 64 px image: the thumbnail as it is and a 2 × 2 canvas of 64 px tiles, the image doubled to 128 px.
    Doubled by nearest neighbour, every tile cell reads its own 8 × 8 source pixels only: the tokens of a changed
    rectangle are exactly the layout's, with no margin (by bicubic, the default, its neighbours change too)."""
    engine = tiny_engine("perception_lm", (64, 64), local=True, resample=0)
    layout = check_rectangles(engine, (64, 64), corner_rectangles(64, 64))
    assert [(p.name, p.box) for p in layout.panels] == [
        ("thumbnail", (0.0, 0.0, 64.0, 64.0)), ("tile 0,0", (0.0, 0.0, 32.0, 32.0)),
        ("tile 0,1", (32.0, 0.0, 64.0, 32.0)), ("tile 1,0", (0.0, 32.0, 32.0, 64.0)),
        ("tile 1,1", (32.0, 32.0, 64.0, 64.0))]


# ---------------------------------------------------------------------------------------
# real configurations (random weights): the paper's token grids
# ---------------------------------------------------------------------------------------
def test_llava_1_5_real_config_is_one_24x24_grid(hub_engine):
    engine = hub_engine("llava-1.5-7b-hf")
    layout = check_rectangles(engine, (336, 336), [(0, 0, 168, 84), (252, 168, 336, 336)])
    assert layout.n_tokens == 576
    assert [(p.name, p.shape, p.box) for p in layout.panels] == [("base", (24, 24), (0.0, 0.0, 336.0, 336.0))]
    assert layout.non_spatial == {}


def test_qwen2_vl_real_config_at_448_is_16x16(hub_engine):
    engine = hub_engine("qwen2-vl-2b-instruct")
    layout = check_rectangles(engine, (448, 448), [(0, 0, 224, 112), (336, 224, 448, 448)])
    assert layout.n_tokens == 256
    assert [(p.name, p.shape) for p in layout.panels] == [("base", (16, 16))]


# ---------------------------------------------------------------------------------------
# errors, maps, JSON, drawing
# ---------------------------------------------------------------------------------------
def test_wrong_token_count_raises(tiny_engine):
    engine = tiny_engine("qwen2_vl")
    sample = engine.prepare(random_image((48, 48)), answer="dog")
    sample.image_positions = sample.image_positions[:-1]
    with pytest.raises(UserError, match="15 .*16|16 image tokens, the sample has 15"):
        image_token_layout(engine, sample)


def _toy_layout():
    base = Panel("base", np.arange(4).reshape(2, 2), (0.0, 0.0, 40.0, 20.0))
    high = Panel("high-res", np.array([[4, 5, -1], [7, 8, 9]]), (10.0, 0.0, 40.0, 20.0))
    return TokenLayout("toy", 10, (40, 20), (base, high), {"newline": (6,)})


def test_finest_panels_do_not_overlap(tiny_engine, paper_next_engine):
    assert _toy_layout().finest() == ["high-res"]             # 100 px² cells against 200 px²
    engine = paper_next_engine
    layout = image_token_layout(engine, engine.prepare(random_image((336, 336)), answer="dog"))
    assert layout.finest() == ["base"]                        # 24×24 both, over the whole image: a tie
    engine.resolution, saved = None, engine.resolution
    try:                                                      # 672² -> pinpoint 672×672: 48×48 high-res
        layout = image_token_layout(engine, engine.prepare(random_image((672, 672)), answer="dog"))
    finally:
        engine.resolution = saved
    assert [p.shape for p in layout.panels] == [(24, 24), (48, 48)] and layout.finest() == ["high-res"]
    engine = tiny_engine("internvl", (128, 64), local=True, crop_to_patches=True, max_patches=4)
    layout = image_token_layout(engine, engine.prepare(random_image((128, 64)), answer="dog"))
    assert layout.finest() == ["tile 0,0", "tile 0,1"]
    engine = tiny_engine("qwen2_vl")
    assert image_token_layout(engine, engine.prepare(random_image((48, 48)), answer="dog")).finest() == ["base"]


def test_to_maps_places_values_and_nan():
    maps = to_maps(np.arange(10) * 1.5, _toy_layout())
    np.testing.assert_array_equal(maps[0], [[0, 1.5], [3, 4.5]])
    np.testing.assert_array_equal(maps[1], [[6, 7.5, np.nan], [10.5, 12, 13.5]])
    with pytest.raises(ValueError):
        to_maps(np.arange(9), _toy_layout())


def test_layout_check_rejects_duplicates_and_gaps():
    layout = _toy_layout()
    layout.check()
    with pytest.raises(ValueError):
        TokenLayout("toy", 10, (40, 20), layout.panels, {"newline": (5,)}).check()   # 5 twice, 6 missing
    with pytest.raises(ValueError):
        TokenLayout("toy", 11, (40, 20), layout.panels, layout.non_spatial).check()  # 10 missing


@pytest.mark.parametrize("family,resolution", [("llava_next", (200, 48)), ("qwen2_vl", None)])
def test_json_round_trip(tiny_engine, family, resolution):
    engine = tiny_engine(family, resolution)
    layout = image_token_layout(engine, engine.prepare(random_image((48, 48)), answer="dog"))
    for original in (layout, _toy_layout()):
        data = json.loads(json.dumps(original.to_dict()))
        back = TokenLayout.from_dict(data)
        assert (back.model_type, back.n_tokens, back.image_size, back.non_spatial) == \
            (original.model_type, original.n_tokens, tuple(original.image_size), original.non_spatial)
        for a, b in zip(original.panels, back.panels, strict=True):
            assert a.name == b.name and a.box == b.box
            np.testing.assert_array_equal(a.tokens, b.tokens)
    assert "tokens" in _toy_layout().to_dict()["panels"][1]            # irregular: stored in full
    assert "tokens" not in layout.to_dict()["panels"][-1]             # regular: start + row_stride


def test_draw_over_image_puts_each_panel_on_its_box():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = _toy_layout()
    image = np.zeros((40, 80, 3), np.uint8)             # drawn at twice the layout's 40×20
    fig, ax = plt.subplots()
    draw_over_image(ax, image, np.arange(10.0), layout)       # one Axes: the finest panel only
    assert len(ax.get_images()) == 2 and ax.get_images()[1].get_extent() == [20.0, 80.0, 40.0, 0.0]
    plt.close(fig)
    fig, ax = plt.subplots()
    mappable = draw_over_image(ax, image, np.arange(10.0), layout, panels=["base", "high-res"])
    overlays = ax.get_images()[1:]
    assert len(ax.get_images()) == 3
    assert overlays[0].get_extent() == [0.0, 80.0, 40.0, 0.0]
    assert overlays[1].get_extent() == [20.0, 80.0, 40.0, 0.0]
    np.testing.assert_array_equal(overlays[1].get_array().filled(np.nan), to_maps(np.arange(10.0), layout)[1])
    assert mappable.norm.vmin == 0 and mappable.norm.vmax == 9    # shared scale over drawn tokens
    fig.colorbar(mappable, ax=ax)
    plt.close(fig)

    fig = plt.figure()
    draw_over_image(fig, image, np.arange(10.0), layout, panels=["high-res"], vmin=-1, vmax=1)
    assert len(fig.axes) == 1 and fig.axes[0].get_images()[1].norm.vmax == 1
    plt.close(fig)
    fig = plt.figure()
    draw_over_image(fig, image, np.arange(10.0), layout)
    assert [a.get_title() for a in fig.axes] == ["base", "high-res"]
    plt.close(fig)


@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_idefics3_split_tiles_and_global_image(tiny_engine, family):
    """Image splitting on (views of 64 px, a 128 × 64 input): two tiles side by side, then the global
    image; the <row_r_col_c> / <global-img> tokens between them are not image tokens (SmolVLM's
    processor writes the same prompt)."""
    engine = tiny_engine(family, (128, 64), local=True, do_image_splitting=True)
    image_processor = engine.processor.image_processor
    image_processor.size = type(image_processor.size)(longest_edge=128)   # this engine only (its own key)
    layout = check_rectangles(engine, (128, 64), corner_rectangles(128, 64), margin=8)
    assert [p.name for p in layout.panels] == ["tile 0,0", "tile 0,1", "global"]
    assert layout.n_tokens == 3 * 16
    assert layout.panel("tile 0,1").box == (64.0, 0.0, 128.0, 64.0)
