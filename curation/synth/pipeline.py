"""Load the SDXL generator: a hub id or local directory, or a tiny random pipeline built in code.

One :class:`GeneratorConfig` says which model to use; :func:`load_pipelines` turns it into a
:class:`SynthPipelines` holding the text-to-image pipeline and, built on demand from the same
modules (``from_pipe``, no second copy of the weights), the img2img and inpainting pipelines.

``tiny-random`` builds a ~1 M-parameter SDXL pipeline (small UNet, VAE, two CLIP text encoders and
a CLIP tokenizer written from a local vocabulary) so tests and the demo run offline on a CPU in
seconds. Its images are noise: every pipeline knows whether its weights are random
(:attr:`SynthPipelines.random_weights`) and the generator never admits such images to training.

diffusers and transformers are imported inside the functions, so importing this module is cheap.

Example:
    >>> from curation.synth.pipeline import GeneratorConfig, load_pipelines
    >>> pipes = load_pipelines(GeneratorConfig(model="tiny-random"))  # doctest: +SKIP
    >>> pipes.random_weights, pipes.generator_id  # doctest: +SKIP
    (True, 'sdxl-tiny-random')
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import ConfigError, suggest
from curation.typed_config import setting

TINY = "tiny-random"
"""Model name that builds the tiny random SDXL pipeline instead of loading one."""

FP16_FIX_VAE = "madebyollin/sdxl-vae-fp16-fix"
"""The SDXL VAE rescaled to run in fp16 without NaNs; pass it as ``GeneratorConfig.vae``."""

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class GeneratorConfig:
    """Which generator to load and how.

    Attributes:
        model: hub id (``stabilityai/stable-diffusion-xl-base-1.0``), a local diffusers directory,
            or ``tiny-random`` (built in code, random weights: tests and demo only).
        inpaint_model: optional dedicated SDXL inpainting checkpoint
            (``diffusers/stable-diffusion-xl-1.0-inpainting-0.1``); None reuses ``model``'s modules.
        vae: optional replacement VAE (hub id or local dir), e.g. :data:`FP16_FIX_VAE` for fp16.
        dtype: ``auto`` is float16 on CUDA and float32 on CPU.
        device: ``auto`` picks CUDA when available.
        variant: weight file variant to load (``fp16`` halves the download).
        random_weights: build ``model``'s architecture from its configs with random weights
            (benchmarks without weights); the images are never admitted to training.
        local_files_only: never reach the network (set offline; HF_HUB_OFFLINE also works).
    """

    model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    inpaint_model: str | None = None
    vae: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    variant: str | None = None
    random_weights: bool = setting(False, help="The model architecture with random weights (benchmarks; its images are never admitted).")
    local_files_only: bool = False

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise ConfigError("The `model` parameter must be a hub id, a local directory or `tiny-random`. Got '' instead.")
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"The `dtype` parameter must be one of {', '.join(DTYPES)}. Got {self.dtype!r} instead."
                f"{suggest(str(self.dtype), DTYPES)}"
            )

    @property
    def is_tiny(self) -> bool:
        return self.model == TINY


class SynthPipelines:
    """The text-to-image pipeline plus img2img/inpainting pipelines sharing its modules.

    Attributes:
        text2img: a diffusers ``StableDiffusionXLPipeline``.
        generator_id: recorded on every sample (``generator`` field): model, VAE and weight origin.
        random_weights: True when the weights are random; such images are never admitted to training.
        device: where the pipelines run (``cpu``, ``cuda``).
    """

    def __init__(
        self,
        text2img: Any,
        *,
        generator_id: str,
        random_weights: bool,
        device: str = "cpu",
        inpaint_base: Any | None = None,
    ) -> None:
        self.text2img = text2img
        self.generator_id = generator_id
        self.random_weights = bool(random_weights)
        self.device = device
        self._inpaint_base = inpaint_base
        self._img2img: Any | None = None
        self._inpaint: Any | None = None

    def img2img(self) -> Any:
        """``StableDiffusionXLImg2ImgPipeline`` over the same modules (built once)."""
        if self._img2img is None:
            from diffusers import StableDiffusionXLImg2ImgPipeline

            self._img2img = _quiet(StableDiffusionXLImg2ImgPipeline.from_pipe(self.text2img, requires_aesthetics_score=False))
        return self._img2img

    def inpaint(self) -> Any:
        """``StableDiffusionXLInpaintPipeline``: the dedicated checkpoint if configured, else shared modules."""
        if self._inpaint is None:
            if self._inpaint_base is not None:
                self._inpaint = _quiet(self._inpaint_base)
            else:
                from diffusers import StableDiffusionXLInpaintPipeline

                self._inpaint = _quiet(
                    StableDiffusionXLInpaintPipeline.from_pipe(self.text2img, requires_aesthetics_score=False)
                )
        return self._inpaint

    def with_random_weights(self, flag: bool) -> SynthPipelines:
        """A copy sharing the modules with another ``random_weights`` flag (tests of the admission path)."""
        return SynthPipelines(
            self.text2img,
            generator_id=self.generator_id,
            random_weights=flag,
            device=self.device,
            inpaint_base=self._inpaint_base,
        )


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_pipelines(config: GeneratorConfig) -> SynthPipelines:
    """Load (or build) the generator described by ``config``.

    Raises:
        ConfigError: the model cannot be found offline or has no SDXL layout; the message names it.
    """
    device = resolve_device(config.device)
    if config.is_tiny:
        pipe = build_tiny_pipeline().to(device)
        return SynthPipelines(_quiet(pipe), generator_id="sdxl-tiny-random", random_weights=True, device=device)
    dtype = resolve_dtype(config.dtype, device)
    pipe = _load_sdxl(config.model, config, dtype)
    inpaint = None
    if config.inpaint_model:
        from diffusers import StableDiffusionXLInpaintPipeline

        inpaint = _load_sdxl(config.inpaint_model, config, dtype, cls=StableDiffusionXLInpaintPipeline)
        inpaint.to(device)
    generator_id = f"sdxl:{config.model}"
    if config.vae:
        generator_id += f"+vae:{config.vae}"
    if config.random_weights:
        generator_id += ":random-weights"
    return SynthPipelines(
        _quiet(pipe.to(device)),
        generator_id=generator_id,
        random_weights=config.random_weights,
        device=device,
        inpaint_base=inpaint,
    )


def _load_sdxl(model: str, config: GeneratorConfig, dtype: Any, cls: Any = None) -> Any:
    """``from_pretrained`` with the optional fp16-fix VAE, or the architecture with random weights."""
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline

    cls = cls or StableDiffusionXLPipeline
    common = {"local_files_only": config.local_files_only}
    try:
        if config.random_weights:
            return _random_sdxl(model, dtype, cls, common)
        kwargs: dict[str, Any] = {"torch_dtype": dtype, **common}
        if config.variant:
            kwargs["variant"] = config.variant
        if config.vae:
            kwargs["vae"] = AutoencoderKL.from_pretrained(config.vae, torch_dtype=dtype, **common)
        return cls.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as e:
        where = "local directory" if Path(model).exists() else "hub id"
        raise ConfigError(
            f"Cannot load SDXL generator `{model}` ({where}): {e}. Give a diffusers SDXL directory or hub id "
            "that is cached locally, or `tiny-random` for tests."
        ) from None


def _random_sdxl(model: str, dtype: Any, cls: Any, common: dict[str, Any]) -> Any:
    """SDXL architecture from ``model``'s config files, weights left at their random init."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model, subfolder="unet", **common))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(model, subfolder="vae", **common))
    te = CLIPTextModel(CLIPTextConfig.from_pretrained(model, subfolder="text_encoder", **common))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(model, subfolder="text_encoder_2", **common))
    tok = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **common)
    tok2 = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer_2", **common)
    scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(model, subfolder="scheduler", **common))
    modules = dict(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2, unet=unet, scheduler=scheduler)
    pipe = cls(**modules)
    return pipe.to(dtype=dtype)


# The tiny pipeline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TinySDXLConfig:
    """Sizes of the tiny random SDXL pipeline (tests and demo; images are noise).

    The SDXL wiring rules (DESIGN.md section 8): ``cross_attention_dim`` is the sum of both
    text encoders' hidden sizes, and ``projection_class_embeddings_input_dim`` is
    ``6 * addition_time_embed_dim + text_encoder_2 projection_dim``.
    """

    text_hidden: int = 32
    text_hidden_2: int = 32
    projection_dim: int = 32
    text_layers: int = 2
    unet_channels: tuple[int, int] = (32, 64)
    addition_time_embed_dim: int = 8
    vae_channels: tuple[int, int] = (16, 32)
    seed: int = 0


def build_tiny_pipeline(config: TinySDXLConfig | None = None) -> Any:
    """A ~1 M-parameter ``StableDiffusionXLPipeline`` with random weights, built without any download.

    The weights are drawn from ``config.seed`` so two builds are identical. Generate at 64×64
    (pass ``height``/``width``: the UNet's ``sample_size`` is 8 latents).
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    c = config or TinySDXLConfig()
    tokenizer = tiny_clip_tokenizer()
    vocab = tokenizer.get_vocab()
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]

    def text_config(hidden: int) -> Any:
        return CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_attention_heads=4,
            num_hidden_layers=c.text_layers,
            max_position_embeddings=77,
            projection_dim=c.projection_dim,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
        )

    state = torch.random.get_rng_state()
    torch.manual_seed(c.seed)
    try:
        text_encoder = CLIPTextModel(text_config(c.text_hidden))
        text_encoder_2 = CLIPTextModelWithProjection(text_config(c.text_hidden_2))
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=c.unet_channels,
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 1),
            use_linear_projection=True,
            norm_num_groups=8,
            addition_embed_type="text_time",
            addition_time_embed_dim=c.addition_time_embed_dim,
            cross_attention_dim=c.text_hidden + c.text_hidden_2,
            projection_class_embeddings_input_dim=6 * c.addition_time_embed_dim + c.projection_dim,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=c.vae_channels,
            down_block_types=("DownEncoderBlock2D",) * len(c.vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(c.vae_channels),
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        )
    finally:
        torch.random.set_rng_state(state)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )


def tiny_clip_tokenizer() -> Any:
    """A CLIP tokenizer over a character vocabulary (letters, digits, punctuation), written to a temp dir."""
    from transformers import CLIPTokenizer

    symbols = "abcdefghijklmnopqrstuvwxyz0123456789,.-'!?&/()"
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory(prefix="tiny-clip-") as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77)


def _quiet(pipe: Any) -> Any:
    """Diffusers' own tqdm bars are replaced by the generator's rich progress."""
    pipe.set_progress_bar_config(disable=True)
    return pipe
