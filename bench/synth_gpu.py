"""SDXL generation throughput on a GPU: images/min at 1024², fp16, batch 1 and 4, vs the DESIGN anchor.

The pipeline has SDXL-base's architecture (UNet 2.57 B parameters, SDXL VAE, CLIP-L + bigG text
encoders) with random weights, built in code (no download), run with diffusers defaults (Euler,
classifier-free guidance 5.0, the VAE upcast to fp32 for decoding as SDXL's VAE config asks).
Timings are of whole pipeline calls (text encoding, all steps, VAE decode, PIL conversion) after
a warm-up call; the UNet step time (CFG, batch 2·b) is measured on its own too.

Anchor (DESIGN.md section 9, H100, same setup): 78 ms/step at batch 1 and 173 ms/step at batch 4;
~25 images/min (batch 1) and ~43 images/min (batch 4) with 30 steps.

On a machine without CUDA it prints a message and exits 0 (``make bench`` runs every script).
``--tiny`` runs the same measurement with the tiny test pipeline on any device (a smoke test).

Usage:
    python bench/synth_gpu.py [--steps 30] [--batches 1 4] [--size 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ANCHOR_IMAGES_PER_MIN = {1: 25.0, 4: 43.0}
ANCHOR_MS_PER_STEP = {1: 78.0, 4: 173.0}

SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,  # 768 (CLIP-L) + 1280 (bigG)
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # 6·256 + 1280
)
SDXL_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=1024,
    scaling_factor=0.13025,
    force_upcast=True,
)


CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, projection_dim=768,
              hidden_act="quick_gelu")
BIG_G = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32, projection_dim=1280,
             hidden_act="gelu")


def sdxl_sized_pipeline(device: str, dtype, *, unet: dict = SDXL_UNET, vae: dict = SDXL_VAE, clip_l: dict = CLIP_L,
                        big_g: dict = BIG_G):
    """SDXL-base architecture with random weights, built directly on ``device`` (configs overridable for a smoke test)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from curation.synth.pipeline import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()  # tokenization cost is negligible; ids fit the 49,408-token tables
    vocab = tokenizer.get_vocab()
    ids = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])
    with torch.device(device):
        unet_model = UNet2DConditionModel(**unet)
        vae_model = AutoencoderKL(**vae)
        te = CLIPTextModel(CLIPTextConfig(**clip_l, **ids))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**big_g, **ids))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae_model, text_encoder=te, text_encoder_2=te2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet_model, scheduler=scheduler)
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def unet_step_ms(pipe, batch: int, size: int, device: str, dtype, repeats: int = 5) -> float:
    """One CFG UNet step (batch 2·b latents) in ms, median of ``repeats``."""
    import torch

    cfg = pipe.unet.config
    n = 2 * batch
    lat = size // 8
    text = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    sample = torch.randn(n, 4, lat, lat, device=device, dtype=dtype)  # [2b, 4, h/8, w/8]
    context = torch.randn(n, 77, text, device=device, dtype=dtype)  # [2b, 77, 2048]
    added = {
        "text_embeds": torch.randn(n, pipe.text_encoder_2.config.projection_dim, device=device, dtype=dtype),
        "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * n, device=device, dtype=dtype),
    }
    assert cfg.projection_class_embeddings_input_dim == 6 * cfg.addition_time_embed_dim + added["text_embeds"].shape[1]
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            _sync(device)
            t = time.perf_counter()
            pipe.unet(sample, 999, encoder_hidden_states=context, added_cond_kwargs=added)
            _sync(device)
            times.append((time.perf_counter() - t) * 1000)
    return sorted(times[1:])[len(times[1:]) // 2]


def images_per_min(pipe, batch: int, size: int, steps: int, device: str, repeats: int) -> float:
    """Whole pipeline calls: images per minute, best of ``repeats`` after one warm-up call."""
    import torch

    prompts = ["dashcam photo, an orange crane above a building site, downtown, daytime"] * batch
    best = float("inf")
    for i in range(repeats + 1):
        gens = [torch.Generator("cpu").manual_seed(j) for j in range(batch)]
        _sync(device)
        t = time.perf_counter()
        pipe(prompts, num_inference_steps=steps, height=size, width=size, guidance_scale=5.0, generator=gens, output_type="pil")
        _sync(device)
        if i > 0:  # call 0 warms up kernels and the allocator
            best = min(best, time.perf_counter() - t)
    return batch * 60.0 / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2, help="timed pipeline calls per batch size (after a warm-up)")
    parser.add_argument("--tiny", action="store_true", help="tiny random pipeline on any device (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("synth_gpu: no CUDA GPU on this machine; skipping the SDXL throughput benchmark (run it on a GPU, "
              "or pass --tiny for a CPU smoke test).")
        return 0
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.tiny:
        from curation.synth.pipeline import build_tiny_pipeline

        dtype = torch.float32
        pipe = build_tiny_pipeline().to(device)
        pipe.set_progress_bar_config(disable=True)
        size = min(args.size, 64)
    else:
        dtype = torch.float16
        pipe = sdxl_sized_pipeline(device, dtype)
        size = args.size
    params = sum(p.numel() for p in pipe.unet.parameters())
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"device {name}; UNet {params / 1e9:.2f} B parameters; {size}×{size}; {args.steps} steps; dtype {dtype}")
    rows = []
    for batch in args.batches:
        step_ms = unet_step_ms(pipe, batch, size, device, dtype)
        ipm = images_per_min(pipe, batch, size, args.steps, device, args.repeats)
        row = {
            "batch": batch,
            "unet_ms_per_cfg_step": round(step_ms, 1),
            "images_per_min": round(ipm, 1),
            "anchor_ms_per_step": None if args.tiny else ANCHOR_MS_PER_STEP.get(batch),
            "anchor_images_per_min": None if args.tiny else ANCHOR_IMAGES_PER_MIN.get(batch),
        }
        rows.append(row)
        anchor = row["anchor_images_per_min"]
        vs = f" (anchor {anchor:.0f}/min, {ipm / anchor:.2f}×; step anchor {row['anchor_ms_per_step']:.0f} ms)" if anchor else ""
        print(f"batch {batch}: {step_ms:.1f} ms per CFG UNet step, {ipm:.1f} images/min{vs}")
    if device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    result = {"device": name, "unet_params": params, "size": size, "steps": args.steps, "tiny": args.tiny, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
