"""SAM backends behind one small interface: encode an image once, then answer many prompts.

Three backends, each loaded lazily by :func:`load_backend`:

- ``segment_anything``: Meta's package with a local checkpoint (vit_b / vit_l / vit_h).
- ``transformers``: ``SamModel`` from a hub id or a local folder (box and point prompts).
- ``sam3``: ``Sam3Model`` from a hub id or a local folder (text prompts: "traffic cone", ...).

Every backend computes the image embedding in :meth:`set_image` and reuses it for every prompt of
that image: the encoder is ~all of SAM's cost (ViT-H ~25 images/s on an H100), the prompt decoder is
cheap. Masks come back at the original image resolution as boolean arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from curation.errors import ConfigError, InputError, suggest

SEGMENT_ANYTHING_TYPES = ("vit_b", "vit_l", "vit_h")


class SamBackend(Protocol):
    """What :func:`curation.label.sam.sam_boxes` needs from a SAM model."""

    supports_geometry: bool  # box and point prompts
    supports_text: bool  # concept (text) prompts

    def set_image(self, image: np.ndarray) -> None:
        """Encode one RGB uint8 image [H, W, 3]; later predictions reuse the embedding."""

    def predict_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [N, 4] pixel xyxy -> masks [N, H, W] bool and scores [N] (one mask per box)."""

    def predict_points(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One prompt of points [K, 2] pixel xy with labels [K] (1 fg, 0 bg) -> mask [H, W], score []."""

    def predict_text(self, text: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """All instances of a concept -> masks [M, H, W] bool and scores [M]."""


class SegmentAnythingBackend:
    """``segment_anything``'s ``SamPredictor`` around a built ``Sam`` model."""

    supports_geometry = True
    supports_text = False

    def __init__(self, model: Any, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self._predictor: Any = None

    def set_image(self, image: np.ndarray) -> None:
        if self._predictor is None:
            from segment_anything import SamPredictor

            self.model.to(self.device).eval()
            self._predictor = SamPredictor(self.model)
        self._predictor.set_image(image, image_format="RGB")

    def predict_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        p = self._predictor
        with torch.inference_mode():
            tboxes = torch.as_tensor(boxes, dtype=torch.float32, device=p.device)
            tboxes = p.transform.apply_boxes_torch(tboxes, p.original_size)
            masks, scores, _ = p.predict_torch(None, None, boxes=tboxes, multimask_output=False)
        # masks [N, 1, H, W], scores [N, 1]
        return masks[:, 0].cpu().numpy().astype(bool), scores[:, 0].float().cpu().numpy()

    def predict_points(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One point is ambiguous (part or whole): ask for three masks and keep the best-scored one.
        masks, scores, _ = self._predictor.predict(
            point_coords=np.asarray(points, dtype=np.float32),
            point_labels=np.asarray(labels, dtype=np.int64),
            multimask_output=len(points) == 1,
        )
        best = int(np.argmax(scores))
        return masks[best].astype(bool), np.float32(scores[best])

    def predict_text(self, text: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError("The `segment_anything` backend has no text prompts; use backend `sam3`.")


class TransformersSamBackend:
    """transformers ``SamModel`` + ``SamProcessor``: the embedding from ``get_image_embeddings``."""

    supports_geometry = True
    supports_text = False

    def __init__(self, model: Any, processor: Any, device: str = "cpu") -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self._moved = False
        self._embeddings: Any = None
        self._original: tuple[int, int] = (0, 0)
        self._reshaped: tuple[int, int] = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        import torch

        if not self._moved:
            self.model.to(self.device).eval()
            self._moved = True
        inputs = self.processor(images=image, return_tensors="pt")
        self._original = tuple(int(v) for v in inputs["original_sizes"][0])  # (H, W)
        self._reshaped = tuple(int(v) for v in inputs["reshaped_input_sizes"][0])  # (h, w) before padding
        with torch.inference_mode():
            self._embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))

    def _scale(self, xy: np.ndarray) -> np.ndarray:
        """Original pixel xy -> the resized (longest side) frame the model sees."""
        (h, w), (rh, rw) = self._original, self._reshaped
        return np.asarray(xy, dtype=np.float32) * np.array([rw / w, rh / h] * (xy.shape[-1] // 2), dtype=np.float32)

    def _decode(self, **prompt: Any) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.model(image_embeddings=self._embeddings, multimask_output=False, **prompt)
            # pred_masks [1, N, 1, h', w'] low-res logits; iou_scores [1, N, 1]
            masks = self.processor.image_processor.post_process_masks(
                out.pred_masks.cpu(), [self._original], [self._reshaped]
            )[0]
        return masks[:, 0].numpy().astype(bool), out.iou_scores[0, :, 0].float().cpu().numpy()

    def predict_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        tboxes = torch.as_tensor(self._scale(np.asarray(boxes, dtype=np.float32)))[None].to(self.device)  # [1, N, 4]
        return self._decode(input_boxes=tboxes)

    def predict_points(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        tpoints = torch.as_tensor(self._scale(np.asarray(points, dtype=np.float32)))[None, None].to(self.device)
        tlabels = torch.as_tensor(np.asarray(labels, dtype=np.int64))[None, None].to(self.device)  # [1, 1, K]
        masks, scores = self._decode(input_points=tpoints, input_labels=tlabels)
        return masks[0], scores[0]

    def predict_text(self, text: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError("The `transformers` SAM backend has no text prompts; use backend `sam3`.")


class Sam3TextBackend:
    """transformers ``Sam3Model``: vision features once per image, one decoder pass per concept."""

    supports_geometry = False
    supports_text = True

    def __init__(self, model: Any, processor: Any, device: str = "cpu") -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self._moved = False
        self._vision: Any = None
        self._size: tuple[int, int] = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        import torch

        if not self._moved:
            self.model.to(self.device).eval()
            self._moved = True
        self._size = (int(image.shape[0]), int(image.shape[1]))
        inputs = self.processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            self._vision = self.model.get_vision_features(pixel_values=inputs["pixel_values"].to(self.device))

    def predict_text(self, text: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        import torch

        tokens = self.processor(text=text, return_tensors="pt")
        with torch.inference_mode():
            out = self.model(
                vision_embeds=self._vision,
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens.get("attention_mask").to(self.device) if "attention_mask" in tokens else None,
            )
        result = self.processor.post_process_instance_segmentation(out, threshold=threshold, target_sizes=[self._size])[0]
        masks = result["masks"].cpu().numpy().astype(bool).reshape(-1, *self._size)
        return masks, result["scores"].float().cpu().numpy()

    def predict_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError("The `sam3` backend here takes text prompts only; use `segment_anything` or `transformers` for boxes.")

    def predict_points(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError("The `sam3` backend here takes text prompts only; use `segment_anything` or `transformers` for points.")


def load_backend(backend: str, *, checkpoint: str | Path | None, model_type: str, model: str | None, device: str) -> SamBackend:
    """Build a backend from a local checkpoint or a hub id / local folder; never downloads silently.

    Hub ids resolve through the Hugging Face cache; with ``HF_HUB_OFFLINE=1`` a missing model fails
    with a message that names it.
    """
    if backend == "segment_anything":
        if model_type not in SEGMENT_ANYTHING_TYPES:
            raise ConfigError(
                f"Unknown `model_type` {model_type!r}.{suggest(model_type, SEGMENT_ANYTHING_TYPES)} "
                f"Allowed: {', '.join(SEGMENT_ANYTHING_TYPES)}."
            )
        if checkpoint is None:
            raise ConfigError("Backend `segment_anything` needs `checkpoint`: a local sam_vit_*.pth file.")
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise InputError(f"SAM checkpoint {path} does not exist (backend segment_anything, {model_type}).")
        import pickle

        import torch
        from segment_anything import sam_model_registry

        sam = sam_model_registry[model_type](checkpoint=None)  # built from code; the file gives only tensors
        try:  # weights_only: a crafted .pth cannot run code (segment_anything itself relies on torch's default)
            sam.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise InputError(
                f"SAM checkpoint {path} is not a plain {model_type} state dict readable with weights_only ({type(e).__name__}: "
                f"{str(e)[:200]}); the platform never unpickles objects from weight files."
            ) from None
        return SegmentAnythingBackend(sam, device=device)
    if backend in ("transformers", "sam3"):
        if not model:
            raise ConfigError(f"Backend `{backend}` needs `model`: a hub id or a local folder.")
        looks_local = model.startswith((".", "/", "~")) or Path(model).expanduser().exists()
        if looks_local and not Path(model).expanduser().is_dir():
            raise InputError(f"SAM model folder {model} does not exist (backend {backend}).")
        source = str(Path(model).expanduser()) if looks_local else model
        try:
            if backend == "transformers":
                from transformers import SamModel, SamProcessor

                return TransformersSamBackend(SamModel.from_pretrained(source), SamProcessor.from_pretrained(source), device)
            from transformers import Sam3Model, Sam3Processor

            return Sam3TextBackend(Sam3Model.from_pretrained(source), Sam3Processor.from_pretrained(source), device)
        except OSError as e:
            raise InputError(f"Cannot load SAM model {model!r} (backend {backend}): {e}") from None
    raise ConfigError(f"Unknown SAM backend {backend!r}. Allowed: segment_anything, transformers, sam3.")
