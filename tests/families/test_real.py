"""hearlib.families.real: the cut config and the random weights of a published geometry (fast checks).

The models of every committed hub folder run end to end in tests/families/test_real_configs.py (slow).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from hearlib.families.real import REAL_HUB, real_config, real_config_model

BLIP2 = REAL_HUB / "blip2-opt-2.7b"


def test_a_blip2_config_is_cut_in_depth_only():
    """Decoder, vision tower and Q-Former cut to the depths asked; OPT's MLP (ffn_dim) narrowed; widths, heads,
    queries and vocabulary as in the hub's config.json."""
    published = json.loads((BLIP2 / "config.json").read_text())
    config, source = real_config("blip2-opt-2.7b", layers=2, vision_layers=3, intermediate_size=1024)
    assert source == BLIP2
    text = config.text_config
    assert (text.num_hidden_layers, text.ffn_dim) == (2, 1024)
    for key in ("hidden_size", "num_attention_heads", "vocab_size", "word_embed_proj_dim"):
        assert getattr(text, key) == published["text_config"][key]
    assert config.vision_config.num_hidden_layers == config.qformer_config.num_hidden_layers == 3
    # the config.json leaves the tower and Q-Former widths at BLIP-2's defaults: EVA ViT-g, BERT-base
    assert (config.vision_config.hidden_size, config.qformer_config.hidden_size) == (1408, 768)
    assert config.num_query_tokens == published["num_query_tokens"] == 32
    assert config.image_token_id == published["image_token_index"]


def _small_blip2_hub(root):
    """BLIP-2's hub files with every width shrunk; the vision config keeps transformers' initializer_range 1e-10,
    as the published config.json does."""
    folder = root / "small-blip2"
    shutil.copytree(BLIP2, folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"].update(hidden_size=64, word_embed_proj_dim=64, ffn_dim=128, num_attention_heads=4)
    config["vision_config"].update(hidden_size=64, intermediate_size=128, num_attention_heads=4)
    config["qformer_config"].update(hidden_size=32, intermediate_size=64, num_attention_heads=2)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_weights_initialised_next_to_zero_are_drawn_like_the_others(tmp_path):
    """A vision tower left at std 1e-10 would hide the image from the decoder: real_config_model draws such
    matrices at std 0.02, so the image moves the logits."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    hub = _small_blip2_hub(tmp_path / "hub")
    config, _ = real_config(hub.name, hub=hub.parent)
    assert config.vision_config.initializer_range < 1e-6
    folder = real_config_model(hub.name, tmp_path / "model", hub=hub.parent)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    tower = {k: p for k, p in model.vision_model.named_parameters() if p.ndim >= 2}
    assert tower and all(0.015 < float(p.detach().std()) < 0.025 for p in tower.values())
    processor = AutoProcessor.from_pretrained(folder)
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((224, 224, 3)) * 255).astype("uint8")) for _ in range(2)]
    with torch.no_grad():
        logits = [model(**processor(images=[image], text=["Question: what is it? Answer:"], return_tensors="pt"))
                  .logits[0, -1] for image in images]
    assert float((logits[0] - logits[1]).abs().max()) > 1e-4
