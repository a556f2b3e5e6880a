"""How a Stage-1 model is served (:class:`ServingConfig`): torch-free, so settings can hold it.

The serving itself is :mod:`curation.stage1.serving`; :class:`curation.settings.Settings` carries an
optional ``stage1_serving`` section that every command resolving a Stage-1 model honours.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import ConfigError, suggest

MODES = ("eager", "compile", "cuda_graph")
PATHS = ("query", "bulk")
SERVING_DTYPES = ("bfloat16", "float32")
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
COMPILE_SCOPES = ("blocks", "model")


@dataclass(frozen=True)
class ServingConfig:
    """How a Stage-1 model is served; validated at construction.

    Attributes:
        mode: ``eager`` | ``compile`` | ``cuda_graph`` (see :mod:`curation.stage1.serving`).
        path: ``query`` (one image per step) | ``bulk`` (``batch_images`` per step).
        dtype: backbone dtype, ``bfloat16`` | ``float32``; the head stays float32. None (default)
            serves the model's own dtype (``Stage1Config.dtype``): the numbers its temperature and
            threshold were calibrated on. ``bfloat16`` is the fast choice on a GPU; check |Δp|
            against the model's dtype (``bench/stage1_gpu.py`` prints it) before serving it.
        fp8: replace the transformer blocks' linears with row-scaled FP8 (e4m3) matmuls; needs
            ``dtype: bfloat16`` and a CUDA GPU of compute capability ≥ 9.0.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_images: images per step on the bulk path (static shape; the last batch is padded).
        num_workers: DataLoader worker processes decoding JPEGs on the bulk path (0: in-process).
        pin_memory: page-locked loader batches so host→GPU copies overlap compute (CUDA only).
        prefetch_factor: batches each worker keeps ready.
        compile_scope: ``blocks`` compiles the transformer block once and reuses it for every layer
            (cold compile in seconds); ``model`` compiles the whole step (cross-layer fusion, slower
            to compile).
        autotune: compile with ``max-autotune-no-cudagraphs`` (minutes cold; cache the artefacts).
        compile_cache: torch.compile artefact file, loaded before compiling when it exists and
            rewritten after; None keeps only inductor's own on-disk cache (TORCHINDUCTOR_CACHE_DIR).
    """

    mode: str = "eager"
    path: str = "query"
    dtype: str | None = None
    fp8: bool = False
    device: str = "auto"
    batch_images: int = 32
    num_workers: int = 4
    pin_memory: bool = True
    prefetch_factor: int = 2
    compile_scope: str = "blocks"
    autotune: bool = False
    compile_cache: Path | None = None

    def __post_init__(self) -> None:
        for key, allowed in (("mode", MODES), ("path", PATHS), ("dtype", SERVING_DTYPES), ("compile_scope", COMPILE_SCOPES)):
            value = getattr(self, key)
            if value not in allowed and not (key == "dtype" and value is None):
                raise ConfigError(
                    f"The `{key}` parameter must be one of {', '.join(allowed)}. Got {value!r} instead."
                    f"{suggest(str(value), allowed)}"
                )
        for key, low in (("batch_images", 1), ("num_workers", 0), ("prefetch_factor", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"The `{key}` parameter must be an int in [{low}, inf). Got {value!r} instead.")
        if self.device != "auto":
            if not DEVICE_PATTERN.fullmatch(self.device):
                raise ConfigError(f"The `device` parameter must be auto, cpu, cuda or cuda:N. Got {self.device!r} instead.")
            kind = self.device.split(":")[0]
            if kind == "cpu" and (self.mode == "cuda_graph" or self.fp8):
                what = "`mode: cuda_graph`" if self.mode == "cuda_graph" else "`fp8`"
                raise ConfigError(f"{what} needs a CUDA device; `device` is {self.device!r}.")
        if self.fp8 and self.dtype != "bfloat16":
            raise ConfigError(f"`fp8` needs `dtype: bfloat16`, set explicitly (FP8 matmuls write bf16). Got dtype {self.dtype!r}.")

    @property
    def step_images(self) -> int:
        """Images per static step: 1 on the query path, ``batch_images`` on the bulk path."""
        return 1 if self.path == "query" else self.batch_images

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str) -> ServingConfig:
        """Parse a mapping (YAML/JSON); unknown keys are rejected with the nearest valid key."""
        from curation.typed_config import from_mapping

        return from_mapping(cls, values, source=source)

    def replace(self, **changes: Any) -> ServingConfig:
        return dataclasses.replace(self, **changes)
