"""What an engine checks about itself: that hearlib's attention reproduces the model's own
(:meth:`EngineChecks.check_intact`, at load), that a derived family record works
(:meth:`EngineChecks.check_derived`), and what a result was computed with (the weights'
fingerprint, the environment every record carries). A mixin of :class:`hearlib.method.engine.Engine`."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from hearlib.errors import UnsupportedModel
from hearlib.method.attention import ATTENTION_NAME


def versions() -> dict:
    """The library versions a result depends on (recorded with every record and run)."""
    import transformers

    try:
        import accelerate
        accelerate_version = accelerate.__version__
    except ImportError:                     # pragma: no cover - accelerate is a dependency
        accelerate_version = None
    return {"torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate_version}


@dataclass(frozen=True)
class Coverage:
    """Which decoder layers HeAr's heads cover in a model: ``kind`` is ``"decoder"`` (every layer's
    self-attention), ``"cross-attention"`` (Mllama's cross-attention layers), ``"hybrid"`` (a hybrid decoder's
    softmax-attention layers) or ``"encoder-decoder"`` (the decoder's cross-attention over the encoder);
    ``layers`` the covered decoder layers, of ``decoder_layers``. Every record's environment carries it
    (``as_dict``), and every figure's settings its :meth:`restriction` (docs/METHOD.md)."""

    kind: str
    layers: tuple[int, ...]
    decoder_layers: int

    def as_dict(self) -> dict:
        return {"kind": self.kind, "layers": list(self.layers), "decoder_layers": self.decoder_layers}

    @classmethod
    def from_dict(cls, values: dict) -> "Coverage":
        return cls(values["kind"], tuple(values["layers"]), int(values["decoder_layers"]))

    def _shown(self) -> str:
        return f"{len(self.layers)} of {self.decoder_layers} (layers {', '.join(map(str, self.layers))})"

    def sentence(self) -> str:
        """In a sentence, with what is left alone."""
        listed = ", ".join(map(str, self.layers))
        if self.kind == "decoder":
            return f"HeAr covers all {self.decoder_layers} decoder layers (softmax attention)"
        if self.kind == "encoder-decoder":
            return (f"HeAr covers the cross-attention (over the encoder's image positions) of all {self.decoder_layers} "
                    "decoder layers; the encoder, where image and prompt mix, and the decoder's self-attention are "
                    "not ablated")
        if self.kind == "cross-attention":
            return (f"HeAr covers the {len(self.layers)} cross-attention layers of {self.decoder_layers} decoder "
                    f"layers ({listed}), the only ones that read the image; the self-attention layers never see the "
                    "image and are not ablated")
        return (f"HeAr covers {len(self.layers)} of {self.decoder_layers} decoder layers (the softmax-attention "
                f"ones: {listed}); the other layers' token mixing (linear attention, convolutions, state-space "
                "layers) is not ablated")

    def restriction(self) -> str | None:
        """What a figure's settings state: None where HeAr covers the whole decoder, else which layers."""
        if self.kind == "decoder":
            return None
        if self.kind == "encoder-decoder":
            return (f"the decoder's cross-attention over the encoder only (all {self.decoder_layers} decoder layers): "
                    "the encoder and the decoder's self-attention are not ablated")
        if self.kind == "cross-attention":
            return (f"cross-attention layers only, {self._shown()}: the self-attention layers never see the image "
                    "and are left alone")
        return f"softmax-attention layers only, {self._shown()}: the other layers' token mixing is not ablated"


class EngineChecks:
    @torch.no_grad()
    def check_intact(self) -> dict:
        """Run once at load: the last position's logits of one prompt through hearlib's attention
        function (the recording plan every record's unablated forward uses) equal the model's own
        eager attention (≤ 1e-4 of the logits' scale in float32, 2e-2 in half precision). Catches an
        attention function or mask that silently changed; UnsupportedModel if they differ."""
        from PIL import Image

        side = self.resolution or (224, 224)
        ramp = np.linspace(0, 255, side[0] * side[1] * 3, dtype=np.float64).reshape(side[1], side[0], 3)
        sample = self.prepare(Image.fromarray(ramp.astype(np.uint8)))
        _, _, ours = self._recorded_forward(sample, keep_head_outputs=False)
        self.model.set_attn_implementation({self.family.text_config: "eager"})
        try:
            own = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[0, -1]
        finally:
            self.model.set_attn_implementation({self.family.text_config: ATTENTION_NAME})
        difference = float((ours.float() - own.float()).abs().max())
        scale = max(1.0, float(own.float().abs().max()))
        tolerance = 1e-4 if self.dtype == torch.float32 else 2e-2
        self.sanity = {"max_abs_difference": difference, "logit_scale": scale, "tolerance": tolerance,
                       "ok": difference <= tolerance * scale}
        if not self.sanity["ok"]:
            raise UnsupportedModel(f"{self.name}: the unpatched logits through hearlib's attention differ from the "
                                   f"model's own eager attention by {difference:.3g} (scale {scale:.3g}); its "
                                   "attention or mask is not what hearlib expects")
        return self.sanity

    def weight_fingerprint(self) -> str:
        """A hash of every parameter's name, shape, dtype, sum and first values (computed once)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, parameter in self.model.named_parameters():
                flat = parameter.detach().reshape(-1)
                head = flat[:8].float().cpu().numpy().round(6).tolist()
                digest.update(repr((name, tuple(parameter.shape), str(parameter.dtype),
                                    round(float(flat.float().sum()), 3), head)).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @property
    def covered(self) -> Coverage:
        """Which decoder layers HeAr's heads cover (:class:`Coverage`)."""
        family = self.family
        kind = ("decoder" if not family.hybrid else "encoder-decoder" if family.encoder_decoder
                else "cross-attention" if family.cross_attention else "hybrid")
        return Coverage(kind, tuple(self.covered_layers), self.n_decoder_layers)

    @property
    def coverage(self) -> str:
        """Which decoder layers HeAr's heads cover, in a sentence."""
        return self.covered.sentence()

    def environment(self, method: str | None = None) -> dict:
        """What a result was computed with: library versions, device, dtype, engine path, attention
        implementation, the weights' fingerprint, the loading report and the load-time check."""
        return {**versions(), "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "method": method, "attention": f"{ATTENTION_NAME} (hearlib; the model's sdpa/eager when no plan)",
                "family": self.family.model_type, "coverage": self.coverage, "covered": self.covered.as_dict(),
                "weights": self.weight_fingerprint(),
                "load": self.load_report, "check": self.sanity}

    @torch.no_grad()
    def check_derived(self, n_masks: int = 3, seed: int = 0) -> None:
        """The check a derived record (:func:`hearlib.families.registry.derived_family`) passes before use:
        on two random images, every head intact gives the model's own logit (≤ 1e-5 relative to
        the logits' scale) and the fast path equals the literal one on random masks (≤ 1e-4);
        UnsupportedModel says what failed."""
        from PIL import Image

        from hearlib.method.means import compute_means

        def refuse(what: str):
            raise UnsupportedModel(f"{self.family.model_type} is not registered and its derived record failed "
                                   f"the check on the loaded model: {what}; register the family "
                                   "(docs/ADDING_A_MODEL_FAMILY.md)")

        rng = np.random.default_rng(seed)
        side = self.resolution or (224, 224)
        images = [Image.fromarray(rng.integers(0, 256, (side[1], side[0], 3), dtype=np.uint8)) for _ in range(2)]
        word = next((w for w in ("yes", "a", "the", "1") if self.answer_problem(w) is None), None)
        if word is None:
            refuse("no short answer word tokenizes after the chat prompt")
        try:
            sample = self.prepare(images[0], answer=word)
            means = compute_means(self, images[1:], progress=False)
            heads = rng.random((n_masks, self.n_total_heads)) < 0.5
            heads[0] = True
            literal = self.logits(sample, means, heads, method="literal")
            fast = self.logits(sample, means, heads, method="fast", batch_size=n_masks)
            own = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[0, -1]
        except UnsupportedModel:
            raise
        except Exception as error:  # noqa: BLE001 - whatever breaks is what failed
            refuse(f"{type(error).__name__}: {error}")
        unpatched = self._adjusted(own[None], sample)[0]
        scale = max(1.0, float(own.float().abs().max()))
        if abs(literal[0] - unpatched) > 1e-5 * scale:
            refuse(f"all heads intact gives {literal[0]:.6g}, the model itself {unpatched:.6g}")
        if np.abs(fast - literal).max() > 1e-4 * scale:
            refuse(f"fast and literal ablation differ by {np.abs(fast - literal).max():.3g}")

    # -- identity ----------------------------------------------------------------------
