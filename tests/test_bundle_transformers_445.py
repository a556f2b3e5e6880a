"""The bundle in the StreetVision miner's own environment: transformers 4.45.2 (issue #23).

The subnet's miner pins transformers ~4.45 (lock 4.45.2), which has no DINOv3 classes. A side
environment with that release (``pip install --no-deps --target``, plus whichever of its requirements
the venv does not satisfy) is built once and cached under ``$CURATION_TEST_CACHE`` (default
``~/.cache/curation-tests``); a fresh interpreter with it first on ``PYTHONPATH`` and ``import curation``
blocked scores a 224×224 validator query and a 1920×1080 frame through ``pipeline(...,
trust_remote_code=True)`` and through the miner detector. Both must equal the platform, and the same
run under the installed transformers, within 1e-5.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
import torch
from isolation import BLOCK_PLATFORM
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_export import bundles, jpeg_bytes, platform_raw, queries, scene  # noqa: F401  (bundles, queries: fixtures)

from curation.export.hf_template.dinov3_plain import PlainDINOv3ViT
from curation.stage1.backbone import tiny_random_backbone
from curation.stage1.validator_view import validator_query

PINNED = "4.45.2"
ATOL = 1e-5
INSTALL_ROUNDS = 4  # requirements of requirements; 4.45.2 needs two rounds (tokenizers 0.20, huggingface-hub < 1)


def side_env_dir() -> Path:
    root = os.environ.get("CURATION_TEST_CACHE") or Path.home() / ".cache" / "curation-tests"
    return Path(root).expanduser() / f"transformers-{PINNED}"


def unmet_requirements(target: Path) -> list[str]:
    """Requirements of the packages in ``target`` that neither ``target`` nor this venv satisfies."""
    dists = list(importlib.metadata.distributions(path=[str(target)]))
    in_target = {canonicalize_name(d.metadata["Name"]): d.version for d in dists}
    unmet = []
    for dist in dists:
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an optional extra or another platform
            name = canonicalize_name(req.name)
            try:
                version = in_target.get(name) or importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                version = None
            if version is None or not req.specifier.contains(version, prereleases=True):
                unmet.append(f"{req.name}{req.specifier}")
    return sorted(set(unmet))


def pip_install(target: Path, requirements: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    cmd += ["--retries", "2", "--timeout", "30", "--target", str(target), *requirements]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        skip_if_registry_unreachable()
        pytest.fail(f"pip could not install {requirements} although the registry answers:\n{proc.stderr[-3000:]}")


def skip_if_registry_unreachable() -> None:
    """Skip (with the reason) only when pip's package index does not answer; any other pip failure fails the test."""
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"], check=False, capture_output=True, text=True)
    if not os.environ.get("PIP_INDEX_URL") and proc.returncode == 0 and proc.stdout.strip():
        index = proc.stdout.strip()
    try:
        urllib.request.urlopen(f"{index.rstrip('/')}/transformers/", timeout=20).close()
    except OSError as e:
        pytest.skip(f"package registry unreachable ({index}: {e}); cannot build the transformers {PINNED} side environment")


@pytest.fixture(scope="module")
def side_env() -> Path:
    """The cached transformers 4.45.2 target folder, built (atomically) on first use."""
    final = side_env_dir()
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        pip_install(partial, [f"transformers=={PINNED}"])
        for _ in range(INSTALL_ROUNDS):
            unmet = unmet_requirements(partial)
            if not unmet:
                break
            pip_install(partial, unmet)
        else:
            pytest.fail(f"transformers {PINNED}'s requirements still unmet after {INSTALL_ROUNDS} rounds: {unmet}")
        try:
            os.rename(partial, final)
        except OSError:  # another run finished first: use its copy
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


@pytest.fixture(scope="module")
def validator_jpegs(tmp_path_factory) -> dict[str, Path]:
    """What a miner receives: a 224×224 validator query and a native 1920×1080 frame, as JPEG bytes."""
    folder = tmp_path_factory.mktemp("jpegs")
    images = {"q224": validator_query(scene(3), seed=13, level=3), "frame1080": scene(11, 1920, 1080)}
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.jpg"
        paths[name].write_bytes(jpeg_bytes(image))
    return paths


SCORE = BLOCK_PLATFORM + textwrap.dedent(
    """
    import timm, torch, transformers
    from PIL import Image
    from transformers import pipeline

    out = {"blocked": blocked, "transformers": transformers.__version__, "transformers_file": transformers.__file__,
           "timm": timm.__version__, "has_dinov3": hasattr(transformers, "DINOv3ViTModel"), "bundles": {}}
    print("transformers", transformers.__version__, "from", transformers.__file__, file=sys.stderr)
    for name, folder in args["bundles"].items():
        clf = pipeline("image-classification", model=folder, trust_remote_code=True)
        spec = importlib.util.spec_from_file_location("detector_" + name, folder + "/miner/roadwork_detector.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        detector = module.RoadworkDetector(config_name=folder + "/miner/roadwork_stage1.yaml")
        scores = {}
        for query, path in args["jpegs"].items():
            data = open(path, "rb").read()
            pixels = clf.image_processor(images=Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                logit = clf.model(pixel_values=pixels).roadwork_logit[0].item()
            scores[query] = {
                "pipeline": {r["label"]: r["score"] for r in clf(Image.open(path))}["Roadwork"],
                "detector": detector(Image.open(io.BytesIO(data))),  # as the miner's forward decodes the query
                "logit": logit,
            }
        out["bundles"][name] = scores
    print("RESULT " + json.dumps(out))
    """
)


def score_in_fresh_interpreter(root: Path, bundle_dirs: dict[str, Path], jpegs: dict[str, Path], pythonpath: Path | None) -> dict:
    """Run SCORE with ``pythonpath`` first on the path (None: the venv as is) and ``import curation`` blocked."""
    root.mkdir(parents=True)
    blocker = root / "blocker" / "curation"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the platform must not be needed by a bundle')\n")
    args = {
        "blocker": str(blocker.parent),
        "bundles": {k: str(v) for k, v in bundle_dirs.items()},
        "jpegs": {k: str(v) for k, v in jpegs.items()},
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HOME", "HF_MODULES_CACHE")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(root / "hf"), OMP_NUM_THREADS="2")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run(
        [sys.executable, "-c", SCORE, json.dumps(args)], check=False, cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def runs(side_env, bundles, validator_jpegs, tmp_path_factory) -> dict[str, dict]:  # noqa: F811
    """Scores of every bundle under transformers 4.45.2 (side environment) and under the installed release."""
    root = tmp_path_factory.mktemp("runs")
    dirs = {name: path for name, (_, path) in bundles.items()}
    return {
        PINNED: score_in_fresh_interpreter(root / "pinned", dirs, validator_jpegs, side_env),
        "installed": score_in_fresh_interpreter(root / "installed", dirs, validator_jpegs, None),
    }


@pytest.mark.slow
def test_side_environment_really_runs_transformers_4_45_2(runs, side_env):
    pinned = runs[PINNED]
    assert pinned["transformers"] == PINNED
    assert Path(pinned["transformers_file"]).resolve().is_relative_to(side_env.resolve())
    assert not pinned["has_dinov3"], "4.45.2 has no DINOv3 classes: the bundle must not need them"
    assert pinned["blocked"] and runs["installed"]["blocked"]  # no platform in either interpreter
    assert runs["installed"]["transformers"] == importlib.metadata.version("transformers")
    assert pinned["timm"] == runs["installed"]["timm"]  # the CNN bundle's timm imports beside 4.45.2 too


@pytest.mark.slow
@pytest.mark.parametrize("env", [PINNED, "installed"])
@pytest.mark.parametrize("name", ["plain", "learned", "cnn"])
def test_pipeline_and_miner_detector_match_the_platform(runs, bundles, validator_jpegs, env, name):  # noqa: F811
    """224×224 query and 1920×1080 frame: calibrated logit and P(Roadwork) equal the platform's within 1e-5."""
    model, _ = bundles[name]
    cfg = model.config
    shift = -torch.logit(torch.tensor(cfg.threshold, dtype=torch.float64)).item()
    raw = platform_raw(model, validator_jpegs)
    for query in validator_jpegs:
        z = raw[query] / cfg.temperature + shift
        p = 1 / (1 + torch.exp(torch.tensor(-z, dtype=torch.float64)).item())
        got = runs[env]["bundles"][name][query]
        assert got["logit"] == pytest.approx(z, abs=ATOL), (env, name, query)
        assert got["pipeline"] == pytest.approx(p, abs=ATOL), (env, name, query)
        assert got["detector"] == pytest.approx(p, abs=ATOL), (env, name, query)


@pytest.mark.slow
def test_transformers_4_45_2_scores_equal_the_installed_release(runs):
    pinned, installed = runs[PINNED]["bundles"], runs["installed"]["bundles"]
    for name, queries_ in installed.items():
        for query, scores in queries_.items():
            for entry, value in scores.items():
                assert pinned[name][query][entry] == pytest.approx(value, abs=ATOL), (name, query, entry)


@pytest.mark.parametrize(
    "changes",
    [{}, {"use_gated_mlp": True, "hidden_act": "silu", "num_register_tokens": 0, "key_bias": True, "layerscale_value": 0.1}],
    ids=["tiny", "gated-silu-no-registers"],
)
def test_plain_dinov3_equals_transformers_dinov3(changes):
    """Same parameter names and the same tokens as transformers' DINOv3ViTModel, square and non-square inputs."""
    from transformers import DINOv3ViTModel

    from curation.export.bundle import backbone_fields

    reference = tiny_random_backbone(seed=3)
    if changes:
        config = reference.config
        for key, value in changes.items():
            setattr(config, key, value)
        torch.manual_seed(3)
        reference = DINOv3ViTModel(config).eval()
    plain = PlainDINOv3ViT(backbone_fields(reference)["backbone_config"]).eval()
    assert set(plain.state_dict()) == set(reference.state_dict())
    plain.load_state_dict(reference.state_dict(), strict=True)
    generator = torch.Generator().manual_seed(0)
    for shape in ((2, 3, 224, 224), (1, 3, 160, 96)):
        pixels = torch.randn(shape, generator=generator)
        with torch.inference_mode():
            expected = reference(pixel_values=pixels).last_hidden_state
            got = plain(pixels)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= ATOL


def test_bundle_declares_transformers_445_and_ships_its_dinov3(bundles):  # noqa: F811
    for name, (_, path) in bundles.items():
        requirements = (path / "requirements.txt").read_text().splitlines()
        assert "transformers>=4.45" in requirements, name
        assert not re.search(r"^\s*(from|import) (transformers|curation)\b", (path / "dinov3_plain.py").read_text(), re.MULTILINE)
        for remote in ("configuration_roadwork.py", "modeling_roadwork.py"):
            assert not re.search(r"^\s*from transformers.* import .*DINOv3", (path / remote).read_text(), re.MULTILINE), (name, remote)
        readme = (path / "README.md").read_text()
        assert "transformers >= 4.45" in readme and "no transformers DINOv3 classes" in readme
        assert "problem_type" not in json.loads((path / "config.json").read_text())  # 4.45's pipeline would sigmoid each logit
