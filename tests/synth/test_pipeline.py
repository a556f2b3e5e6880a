from __future__ import annotations

import pytest
import torch

from curation.errors import ConfigError
from curation.synth.pipeline import GeneratorConfig, TinySDXLConfig, build_tiny_pipeline, load_pipelines


def test_tiny_pipeline_follows_the_sdxl_wiring_rules(tiny_pipes):
    pipe = tiny_pipes.text2img
    cfg = pipe.unet.config
    hidden = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert cfg.cross_attention_dim == hidden
    assert cfg.projection_class_embeddings_input_dim == 6 * cfg.addition_time_embed_dim + pipe.text_encoder_2.config.projection_dim
    assert sum(p.numel() for p in pipe.unet.parameters()) < 2_000_000
    assert tiny_pipes.random_weights and tiny_pipes.generator_id == "sdxl-tiny-random"


def test_img2img_and_inpaint_share_the_modules(tiny_pipes):
    i2i, inp = tiny_pipes.img2img(), tiny_pipes.inpaint()
    assert i2i.unet is tiny_pipes.text2img.unet and inp.vae is tiny_pipes.text2img.vae
    assert tiny_pipes.img2img() is i2i  # built once
    assert i2i.config.requires_aesthetics_score is False


def test_tiny_builds_are_identical_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_tiny_pipeline()
    after = torch.rand(1)
    b = build_tiny_pipeline(TinySDXLConfig())
    assert torch.equal(before, after)
    for (name, pa), (_, pb) in zip(a.unet.state_dict().items(), b.unet.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_generator_config_validation():
    with pytest.raises(ConfigError, match="Did you mean `float16`"):
        GeneratorConfig(dtype="float61")
    with pytest.raises(ConfigError, match="`model`"):
        GeneratorConfig(model=" ")


def test_missing_model_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-sdxl"
    missing.mkdir()
    with pytest.raises(ConfigError, match="no-such-sdxl"):
        load_pipelines(GeneratorConfig(model=str(missing), device="cpu", local_files_only=True))


@pytest.fixture(scope="module")
def local_sdxl(tmp_path_factory):
    """A diffusers SDXL directory on disk (the tiny one), as a downloaded model would be."""
    path = tmp_path_factory.mktemp("sdxl")
    build_tiny_pipeline().save_pretrained(path)
    return path


def test_loads_a_local_directory_with_a_replacement_vae(local_sdxl):
    pipes = load_pipelines(
        GeneratorConfig(model=str(local_sdxl), vae=str(local_sdxl / "vae"), device="cpu", dtype="float32", local_files_only=True)
    )
    assert pipes.random_weights is False
    assert pipes.generator_id == f"sdxl:{local_sdxl}+vae:{local_sdxl / 'vae'}"
    ref = build_tiny_pipeline()
    assert torch.equal(next(iter(pipes.text2img.unet.parameters())), next(iter(ref.unet.parameters())))


def test_random_weights_build_the_architecture_from_configs(local_sdxl):
    pipes = load_pipelines(GeneratorConfig(model=str(local_sdxl), random_weights=True, device="cpu", local_files_only=True))
    assert pipes.random_weights is True and pipes.generator_id.endswith(":random-weights")
    assert pipes.text2img.unet.config.cross_attention_dim == 64
