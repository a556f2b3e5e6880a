"""SAM-assisted boxes: geometry on hand-made masks, prompt collection, and tiny-model end to end.

The models are random and tiny (a 2-block ImageEncoderViT at 128 px, ~95k parameters): their masks
mean nothing, so the end-to-end tests check the plumbing — one image encoding per image, masks and
boxes written, boxes inside the image, the mask matching its box — not the segmentation quality.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from curation.errors import ConfigError, InputError
from curation.label.sam import (
    Prompt,
    SamBoxesConfig,
    collect_prompts,
    crop_mask,
    mask_box_pixels,
    mask_to_box,
    rel_to_xyxy,
    xyxy_to_rel,
)

# Geometry ---------------------------------------------------------------------------------------


def test_mask_to_box_rectangle():
    mask = np.zeros((4, 8), bool)
    mask[1:3, 2:6] = True  # rows 1-2, columns 2-5
    assert mask_box_pixels(mask) == (2, 1, 6, 3)
    assert mask_to_box(mask) == [0.25, 0.25, 0.5, 0.5]


def test_mask_to_box_single_corner_pixel_and_disjoint_parts():
    mask = np.zeros((4, 8), bool)
    mask[3, 7] = True
    assert mask_to_box(mask) == [7 / 8, 3 / 4, 1 / 8, 1 / 4]
    mask[0, 1] = True  # a second blob: the box spans both
    assert mask_to_box(mask) == [1 / 8, 0.0, 7 / 8, 1.0]


def test_mask_to_box_empty_full_and_bad_shape():
    assert mask_to_box(np.zeros((5, 5), bool)) is None
    assert mask_to_box(np.ones((3, 6), bool)) == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="2-D"):
        mask_to_box(np.ones((1, 3, 6), bool))


def test_box_round_trip_recovers_the_mask_pixels():
    mask = np.zeros((10, 20), bool)
    mask[2:7, 5:9] = True
    mask[4, 12] = True
    rel = mask_to_box(mask)
    xyxy = rel_to_xyxy(rel, 20, 10)
    np.testing.assert_allclose(xyxy, [5, 2, 13, 7])
    crop = crop_mask(mask, tuple(int(round(v)) for v in xyxy))
    assert crop.shape == (5, 8) and crop.sum() == mask.sum()


def test_conversions_clip_to_the_image():
    np.testing.assert_allclose(rel_to_xyxy([0.9, -0.1, 0.5, 0.5], 100, 50), [90, 0, 100, 20])
    assert xyxy_to_rel([-10, 5, 50, 80], 100, 50) == [0.0, 0.1, 0.5, 0.9]


# Config and prompts ------------------------------------------------------------------------------


def test_config_validation_names_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean `proposals`"):
        SamBoxesConfig(prompts=("proposal",))
    with pytest.raises(ConfigError, match="text prompts only"):
        SamBoxesConfig(backend="sam3", prompts=("boxes",))
    with pytest.raises(ConfigError, match="need backend `sam3`"):
        SamBoxesConfig(prompts=("text",))
    with pytest.raises(ConfigError, match="Unknown class `cones`"):
        SamBoxesConfig(text_concepts={"traffic cone": "cones"})
    path = tmp_path / "sam.yaml"
    path.write_text("backend: segment_anything\nmodel_typ: vit_b\n")
    with pytest.raises(ConfigError, match="Did you mean `model_type`"):
        SamBoxesConfig.from_yaml(path)


def test_shipped_configs_parse():
    from curation.assets import asset_dir

    folder = asset_dir("models") / "sam"
    configs = {p.stem: SamBoxesConfig.from_yaml(p) for p in sorted(folder.glob("*.yaml"))}
    assert configs["segment_anything_vit_h"].model_type == "vit_h"
    sam3 = configs["sam3_text"]
    assert sam3.backend == "sam3" and set(sam3.concepts) >= {"traffic cone", "excavator"}


def test_text_concepts_only_for_allowed_classes():
    config = SamBoxesConfig(backend="sam3", model="x", prompts=("text",), classes=("cone", "barrier"))
    prompts = collect_prompts({}, config, 100, 100)
    assert {(p.text, p.label) for p in prompts} == {("traffic cone", "cone"), ("construction barrier", "barrier")}


def test_collect_prompts_from_every_source():
    import fiftyone as fo

    fields = {
        "primitive_proposals": fo.Detections(
            detections=[
                fo.Detection(label="cone", bounding_box=[0.1, 0.1, 0.2, 0.2], confidence=0.9),
                fo.Detection(label="drum", bounding_box=[0.5, 0.5, 0.2, 0.2], confidence=0.1),  # too unsure
            ]
        ),
        "primitives": fo.Detections(detections=[fo.Detection(label="barrier", bounding_box=[0.0, 0.5, 0.5, 0.25])]),
        "stage1_views": fo.Detections(
            detections=[
                fo.Detection(label="view", bounding_box=[0, 0, 0.4, 0.4], p=0.95),
                fo.Detection(label="view", bounding_box=[0.3, 0, 0.4, 0.4], p=0.2),
                fo.Detection(label="view", bounding_box=[0.6, 0.6, 0.4, 0.4], p=0.7),
                fo.Detection(label="view", bounding_box=[0.6, 0, 0.4, 0.4], p=0.6),
            ]
        ),
        "sam_points": fo.Keypoints(keypoints=[fo.Keypoint(label="worker", points=[[0.5, 0.25]])]),
    }
    prompts = collect_prompts(fields, SamBoxesConfig(top_views=2, min_view_p=0.5), width=200, height=100)
    by_origin = {}
    for p in prompts:
        by_origin.setdefault(p.origin, []).append(p)
    assert [p.label for p in by_origin["proposals"]] == ["cone"]
    np.testing.assert_allclose(by_origin["proposals"][0].box, (20.0, 10.0, 60.0, 30.0))
    np.testing.assert_allclose(by_origin["boxes"][0].box, (0.0, 50.0, 100.0, 75.0))
    np.testing.assert_allclose([p.box for p in by_origin["stage1_views"]], [(0, 0, 80, 40), (120, 60, 200, 100)])
    assert {p.label for p in by_origin["stage1_views"]} == {"other_roadwork"}
    assert by_origin["points"][0].points == ((100.0, 25.0),) and by_origin["points"][0].point_labels == (1,)


# End to end with tiny random models --------------------------------------------------------------


def tiny_segment_anything():
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim, size, patch = 32, 128, 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=size, patch_size=patch, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, out_chans=dim,
            qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=4, global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(size // patch, size // patch), input_image_size=(size, size), mask_in_chans=4
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


@pytest.fixture
def two_images(dataset, tmp_path):
    """Two images of different shapes with proposals and evidence views, and one without prompts."""
    import fiftyone as fo
    from PIL import Image

    rng = np.random.default_rng(0)
    samples = []
    for i, (w, h) in enumerate([(96, 64), (80, 120), (64, 64)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        sample = fo.Sample(filepath=str(path), split="pool", sources=["natix"])
        if i < 2:
            sample["primitive_proposals"] = fo.Detections(
                detections=[
                    fo.Detection(label="cone", bounding_box=[0.1, 0.2, 0.3, 0.4], confidence=0.8),
                    fo.Detection(label="barrier", bounding_box=[0.5, 0.5, 0.4, 0.3], confidence=0.6),
                ]
            )
            sample["stage1_views"] = fo.Detections(
                detections=[fo.Detection(label="view", bounding_box=[0.0, 0.0, 0.5, 0.5], p=0.9)]
            )
        samples.append(sample)
    dataset.add_samples(samples)
    return dataset


def _check_written(dataset, field="sam_primitives", expect_samples=2, min_dets=3):
    written = dataset.exists(field)
    assert len(written) == expect_samples
    for sample in written:
        image_w, image_h = __import__("PIL.Image", fromlist=["Image"]).open(sample.filepath).size
        assert len(sample[field].detections) >= min_dets
        for det in sample[field].detections:
            x, y, w, h = det.bounding_box
            assert 0.0 <= x and 0.0 <= y and x + w <= 1.0 + 1e-9 and y + h <= 1.0 + 1e-9 and w > 0 and h > 0
            assert det.mask is not None and det.mask.dtype == bool and det.mask.any()
            assert det.mask.shape == (round(h * image_h), round(w * image_w))  # mask cropped to its box
            assert det.prompt in {"proposals", "stage1_views", "points"}
            assert isinstance(det.confidence, float)


def test_segment_anything_end_to_end_encodes_each_image_once(two_images, monkeypatch):
    from curation.label.sam import sam_boxes
    from curation.label.sam_backends import SegmentAnythingBackend

    model = tiny_segment_anything()
    calls = []
    encode = model.image_encoder.forward
    monkeypatch.setattr(model.image_encoder, "forward", lambda x: calls.append(tuple(x.shape)) or encode(x))

    config = SamBoxesConfig(prompts=("proposals", "stage1_views"), min_score=-1.0)
    done = []
    result = sam_boxes(two_images, config, backend=SegmentAnythingBackend(model), progress=done.append)

    assert len(calls) == 2  # two images with prompts, three prompts each, one encoding each
    assert result.n_samples == 2 and sum(done) == 3  # the prompt-less image is counted, not encoded
    assert result.n_masks + result.n_empty == 6
    _check_written(two_images, min_dets=1)
    labels = set(two_images.distinct("sam_primitives.detections.label"))
    assert labels <= {"cone", "barrier", "other_roadwork"}


def test_point_prompts_from_extra_clicks(two_images):
    from curation.label.sam import sam_boxes
    from curation.label.sam_backends import SegmentAnythingBackend

    target = two_images.skip(2).first()  # the image without any stored prompt
    clicks = {target.id: [Prompt(label="worker", origin="points", points=((30.0, 30.0),), point_labels=(1,))]}
    config = SamBoxesConfig(prompts=("points",), min_score=-1.0)
    result = sam_boxes(two_images, config, backend=SegmentAnythingBackend(tiny_segment_anything()), extra_prompts=clicks)
    assert result.n_samples == 1
    dets = two_images[target.id]["sam_primitives"].detections
    assert len(dets) + result.n_empty == 1


def test_transformers_backend_from_local_folder(two_images, tmp_path, monkeypatch):
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    from curation.label.sam import sam_boxes

    config = SamConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=128, patch_size=16,
            output_channels=32, window_size=4, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
    )
    folder = tmp_path / "tiny-sam"
    SamModel(config).save_pretrained(folder)
    SamProcessor(SamImageProcessor(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})).save_pretrained(folder)

    calls = []
    original = SamModel.get_image_embeddings
    monkeypatch.setattr(SamModel, "get_image_embeddings", lambda self, px, **kw: calls.append(1) or original(self, px, **kw))

    cfg = SamBoxesConfig(backend="transformers", model=str(folder), prompts=("proposals", "stage1_views"), min_score=-1.0)
    result = sam_boxes(two_images, cfg)
    assert len(calls) == 2 and result.n_samples == 2
    _check_written(two_images, min_dets=1)


def test_missing_checkpoint_and_model_folder_are_named(two_images, tmp_path):
    from curation.label.sam import sam_boxes

    missing = tmp_path / "sam_vit_b.pth"
    with pytest.raises(InputError, match=f"SAM checkpoint {missing} does not exist"):
        sam_boxes(two_images, SamBoxesConfig(checkpoint=missing, model_type="vit_b"))
    with pytest.raises(ConfigError, match="needs `checkpoint`"):
        sam_boxes(two_images, SamBoxesConfig())
    with pytest.raises(InputError, match="SAM model folder ./nope-sam does not exist"):
        sam_boxes(two_images, SamBoxesConfig(backend="transformers", model="./nope-sam"))


def test_sample_without_image_is_named(two_images):
    from curation.label.sam import sam_boxes
    from curation.label.sam_backends import SegmentAnythingBackend

    gone = two_images.first()
    Path(gone.filepath).unlink()
    with pytest.raises(InputError, match=f"Sample {gone.id}: image .* does not exist"):
        sam_boxes(two_images, SamBoxesConfig(prompts=("proposals",)), backend=SegmentAnythingBackend(tiny_segment_anything()))


class FakeTextBackend:
    """Stands in for SAM 3 (whose tokenizer cannot be built offline): one square per concept."""

    supports_geometry, supports_text = False, True

    def __init__(self):
        self.encoded, self.texts = 0, []

    def set_image(self, image):
        self.encoded += 1
        self.shape = image.shape[:2]

    def predict_text(self, text, threshold):
        self.texts.append(text)
        mask = np.zeros((1, *self.shape), bool)
        mask[0, 2:10, 4:12] = True
        return mask, np.array([0.9], np.float32)


def test_text_prompts_run_each_concept_on_one_encoding(two_images):
    from curation.label.sam import sam_boxes

    backend = FakeTextBackend()
    config = SamBoxesConfig(backend="sam3", model="unused", prompts=("text",), classes=("cone", "worker"))
    result = sam_boxes(two_images, config, backend=backend)
    assert backend.encoded == 3 and sorted(set(backend.texts)) == ["traffic cone", "worker vest"]
    assert result.n_masks == 6
    det = two_images.first()["sam_primitives"].detections[0]
    assert det.prompt == "text" and det.prompt_text in {"traffic cone", "worker vest"}
    assert det.mask.shape == (8, 8)


def test_cli_help_and_missing_checkpoint_error(dataset, settings, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from curation.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["sam-boxes", "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    monkeypatch.setenv("CURATION_DATASET_NAME", settings.dataset_name)
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    missing = tmp_path / "sam_vit_b.pth"
    result = runner.invoke(app, ["sam-boxes", "--checkpoint", str(missing), "--model-type", "vit_b"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "sam_vit_b.pth" in result.output and "does not exist" in result.output
