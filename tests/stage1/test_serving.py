"""Stage-1 serving on CPU: compiled and bulk paths return what the eager Stage-1 path returns.

torch.compile on this CPU costs ~15-25 s cold per static shape (inductor writes and builds C++),
so one compiled model (``blocks`` scope, bulk path, 2 images per step, 32 px views) is built per
module and shared by the compile tests; the query path's own static shape (one image) is the same
code with ``step_images`` 1 and is checked in eager mode. ``cuda_graph`` and ``fp8`` need a CUDA
GPU: here their refusals are tested, and the FP8 linear's arithmetic runs on the CPU's
``torch._scaled_mm``; their GPU runs are ``bench/stage1_gpu.py``'s job. Nothing is skipped.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from curation.errors import ConfigError, InputError
from curation.stage1.backbone import tiny_random_backbone
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.serving import (
    Fp8Linear,
    ServingModel,
    load_compile_cache,
    quantize_fp8,
    save_compile_cache,
)
from curation.serving_config import ServingConfig
from curation.stage1.views import ViewPolicy, pil_to_tensor
from curation.media import open_rgb

CONFIG = Stage1Config(views=ViewPolicy(size=32))  # 32 px views: 4 patches, fast on CPU
CPU_FP32 = ServingConfig(dtype="float32", device="cpu")
SIZES = [(40, 30), (64, 48), (50, 50), (33, 70), (48, 36)]


def _model() -> Stage1Model:
    return Stage1Model.build(CONFIG, backbone=tiny_random_backbone(seed=0))


def _close(a, b, atol: float = 1e-5) -> None:
    for name in ("view_logits", "image_logits", "features"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=atol, rtol=1e-4)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(SIZES):
        path = folder / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def compiled() -> ServingModel:
    served = ServingModel(_model(), CPU_FP32.replace(mode="compile", path="bulk", batch_images=2, num_workers=0))
    served.setup()
    return served


def _eager_on(paths: list[Path]):
    return _model().forward_images([pil_to_tensor(open_rgb(p)) for p in paths])


# Equivalence -------------------------------------------------------------------------------------------
def test_eager_serving_is_the_stage1_path():
    images = [Image.new("RGB", size, color) for size, color in zip(SIZES, ("red", "gray", "blue"))]
    served = ServingModel(_model(), CPU_FP32)  # query path: one image per step
    ref = _model().predict(images)
    for a, b in zip(served.predict(images), ref, strict=True):
        assert a.p_roadwork == b.p_roadwork and a.label == b.label
        np.testing.assert_array_equal(a.view_probs, b.view_probs)
        np.testing.assert_array_equal(a.embedding, b.embedding)


def test_compiled_step_equals_eager_including_the_padded_last_step(compiled):
    assert compiled.report.mode == "compile" and compiled.report.compile_s > 0
    rng = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=rng) for w, h in SIZES[:3]]
    _close(compiled.forward_images(images), _model().forward_images(images))  # 3 images: steps of 2 + 1 padded
    ref = _model().predict([Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images])
    got = compiled.predict([Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images])
    for a, b in zip(got, ref, strict=True):
        assert a.p_roadwork == pytest.approx(b.p_roadwork, abs=1e-5)
        np.testing.assert_allclose(a.view_probs, b.view_probs, atol=1e-5)


def test_compiled_bulk_files_equal_eager_in_order(compiled, jpegs):
    batches = list(compiled.forward_files(jpegs))
    assert [len(b.paths) for b in batches] == [2, 2, 1]
    assert [p for b in batches for p in b.paths] == [str(p) for p in jpegs]
    assert [s for b in batches for s in b.sizes] == SIZES
    got = [torch.cat([getattr(b.output, k) for b in batches]) for k in ("view_logits", "image_logits", "features")]
    ref = _eager_on(jpegs)
    _close(type(ref)(*got), ref)


def test_compile_artifacts_round_trip(compiled, tmp_path):
    path = tmp_path / "cache" / "stage1.bin"
    assert not load_compile_cache(path)
    assert save_compile_cache(path) > 0 and path.stat().st_size > 0
    assert load_compile_cache(path)
    path.write_bytes(b"not torch.compile artefacts")  # corrupt or from another torch: compile cold instead
    assert not load_compile_cache(path)


# Bulk loader -------------------------------------------------------------------------------------------
def test_bulk_workers_keep_order_and_match_eager(jpegs):
    served = ServingModel(_model(), CPU_FP32.replace(path="bulk", batch_images=2, num_workers=2))
    order = [jpegs[i] for i in (3, 0, 4, 1, 2)]
    batches = list(served.forward_files(order))
    assert [p for b in batches for p in b.paths] == [str(p) for p in order]
    got = torch.cat([b.output.features for b in batches])
    torch.testing.assert_close(got, _eager_on(order).features, atol=1e-6, rtol=1e-5)


def test_corrupt_jpeg_names_the_file_after_yielding_earlier_batches(jpegs, tmp_path):
    data = jpegs[0].read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 2])
    served = ServingModel(_model(), CPU_FP32.replace(path="bulk", batch_images=2, num_workers=2))
    seen = []
    with pytest.raises(InputError, match=r"truncated\.jpg: cannot decode image"):
        for batch in served.forward_files([*jpegs[:2], jpegs[2], bad]):
            seen.extend(batch.paths)
    assert seen == [str(p) for p in jpegs[:2]]
    with pytest.raises(InputError, match=r"garbage\.jpg"):
        (tmp_path / "garbage.jpg").write_bytes(b"not a jpeg")
        list(ServingModel(_model(), CPU_FP32.replace(num_workers=0)).forward_files([tmp_path / "garbage.jpg"]))


# FP8 ----------------------------------------------------------------------------------------------------
def test_fp8_linear_tracks_the_bf16_linear():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    x = torch.randn(2, 7, 64).to(torch.bfloat16)
    ref = linear(x.float())
    out = Fp8Linear(linear)(x)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 7, 32)
    assert ((out.float() - ref).norm() / ref.norm()).item() < 0.08  # e4m3 keeps ~3 mantissa bits


def test_quantize_fp8_swaps_block_linears_once():
    backbone = tiny_random_backbone(seed=0).to(torch.bfloat16)
    assert quantize_fp8(backbone) == 12  # 2 blocks × (q, k, v, o, MLP up, MLP down)
    assert quantize_fp8(backbone) == 12
    assert isinstance(backbone.embeddings.patch_embeddings, nn.Conv2d)


# Refusals and config -------------------------------------------------------------------------------------
def test_cuda_only_features_refuse_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"cuda_graph.*needs a CUDA device.*is_available\(\) is False"):
        ServingModel(_model(), ServingConfig(mode="cuda_graph")).setup()
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        ServingModel(_model(), ServingConfig(device="cuda")).setup()
    with pytest.raises(ConfigError, match=r"`fp8` needs a CUDA GPU of compute capability ≥ 9\.0"):
        ServingModel(_model(), ServingConfig(fp8=True, dtype="bfloat16")).setup()
    with pytest.raises(ConfigError, match="`mode: cuda_graph` needs a CUDA device; `device` is 'cpu'"):
        ServingConfig(mode="cuda_graph", device="cpu")


def test_eager_attention_backbone_is_refused():
    model = Stage1Model.build(CONFIG, backbone=tiny_random_backbone(seed=0, attn_implementation="eager"))
    with pytest.raises(ConfigError, match="needs SDPA.*uses 'eager'"):
        ServingModel(model, CPU_FP32).setup()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "cuda-graph"}, r"`mode` parameter must be one of eager, compile, cuda_graph\. Got 'cuda-graph'.*Did you mean `cuda_graph`"),
        ({"path": "batch"}, r"`path` parameter must be one of query, bulk"),
        ({"dtype": "float16"}, r"`dtype` parameter must be one of bfloat16, float32\. Got 'float16'"),
        ({"compile_scope": "layer"}, r"`compile_scope`"),
        ({"batch_images": 0}, r"`batch_images` parameter must be an int in \[1, inf\)\. Got 0"),
        ({"num_workers": -1}, r"`num_workers`.*Got -1"),
        ({"device": "tpu"}, r"`device` parameter must be auto, cpu, cuda or cuda:N\. Got 'tpu'"),
        ({"fp8": True, "dtype": "float32"}, r"`fp8` needs `dtype: bfloat16`"),
    ],
)
def test_bad_config_values_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        ServingConfig(**values)


def test_from_dict_parses_yaml_values_and_suggests_keys():
    parsed = ServingConfig.from_dict({"mode": "compile", "batch_images": "8", "compile_cache": "~/c.bin"}, source="serve.yaml")
    assert parsed.batch_images == 8 and parsed.step_images == 1 and parsed.compile_cache == Path("~/c.bin").expanduser()
    with pytest.raises(ConfigError, match="Unknown key `batch_image`.*Did you mean `batch_images`"):
        ServingConfig.from_dict({"batch_image": 8}, source="serve.yaml")


def test_load_serves_a_saved_model(tmp_path):
    _model().save(tmp_path / "m")
    served = ServingModel.load(tmp_path / "m", serving=CPU_FP32)
    image = Image.open(io.BytesIO(_jpeg_bytes())).convert("RGB")
    assert served.predict([image])[0].p_roadwork == _model().predict([image])[0].p_roadwork


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), "orange").save(buffer, format="JPEG")
    return buffer.getvalue()
