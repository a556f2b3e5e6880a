from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from curation.errors import ConfigError
from curation.settings import Settings
from curation.typed_config import from_mapping


def test_defaults_without_file_or_env():
    s = Settings.load(env={})
    assert s.dataset_name == "roadwork"
    assert s.database_uri is None
    assert s.app_host == "127.0.0.1"
    assert s.media_root == Path(s.home) / "media"


def test_file_then_env_override(tmp_path):
    f = tmp_path / "settings.yaml"
    f.write_text("dataset_name: from_file\napp_port: 6000\nuser_name: alice\n")
    s = Settings.load(f, env={"CURATION_APP_PORT": "7000"})
    assert (s.dataset_name, s.app_port, s.user_name) == ("from_file", 7000, "alice")


def test_fiftyone_database_uri_is_honoured():
    s = Settings.load(env={"FIFTYONE_DATABASE_URI": "mongodb://db:27017"})
    assert s.database_uri == "mongodb://db:27017"
    s = Settings.load(env={"FIFTYONE_DATABASE_URI": "mongodb://a", "CURATION_DATABASE_URI": "mongodb://b"})
    assert s.database_uri == "mongodb://b"


def test_unknown_key_suggests_nearest(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("dataset_nam: x\n")
    with pytest.raises(ConfigError, match=r"Unknown key `dataset_nam`.*Did you mean `dataset_name`"):
        Settings.load(f, env={})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"CURATION_APP_PORT": "http"}, "`app_port` must be int"),
        ({"CURATION_APP_PORT": "70000"}, r"\[1, 65535\]"),
        ({"CURATION_DATASET_NAME": "bad name!"}, "dataset_name"),
        ({"CURATION_USER_NAME": "  "}, "user_name"),
    ],
)
def test_bad_values_are_named(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.load(env=env)


def test_missing_settings_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.yaml", env={})


@dataclass(frozen=True)
class Inner:
    k: int = 1


@dataclass(frozen=True)
class Outer:
    flag: bool = False
    inner: Inner = Inner()
    where: Path | None = None


def test_from_mapping_coerces_nested_and_bool():
    out = from_mapping(Outer, {"flag": "yes", "inner": {"k": "3"}, "where": "/tmp/x"}, source="test")
    assert out == Outer(flag=True, inner=Inner(k=3), where=Path("/tmp/x"))
    with pytest.raises(ConfigError, match=r"Unknown key `kk`.*Did you mean `k`"):
        from_mapping(Outer, {"inner": {"kk": 1}}, source="test")
    with pytest.raises(ConfigError, match="`flag` must be bool"):
        from_mapping(Outer, {"flag": "maybe"}, source="test")


def test_stage1_serving_from_file_and_from_yaml_in_the_environment(tmp_path):
    from curation.serving_config import ServingConfig

    assert Settings.load(env={}).stage1_serving is None
    f = tmp_path / "s.yaml"
    f.write_text("stage1_serving:\n  mode: cuda_graph\n  path: bulk\n  batch_images: '64'\n")
    assert Settings.load(f, env={}).stage1_serving == ServingConfig(mode="cuda_graph", path="bulk", batch_images=64)
    s = Settings.load(f, env={"CURATION_STAGE1_SERVING": "{mode: compile, num_workers: 0}"})
    assert s.stage1_serving == ServingConfig(mode="compile", num_workers=0)  # the variable replaces the section
    for off in ("", "null"):  # `export CURATION_STAGE1_SERVING=` switches serving off, even over the file
        assert Settings.load(f, env={"CURATION_STAGE1_SERVING": off}).stage1_serving is None
    assert Settings.load(env={"CURATION_STAGE1_SERVING": "{}"}).stage1_serving == ServingConfig()  # all defaults
    assert ServingConfig().dtype is None  # serve the model's own dtype unless told otherwise
    with pytest.raises(ConfigError, match=r"Unknown key `modes`.*Did you mean `mode`"):
        Settings.load(env={"CURATION_STAGE1_SERVING": "{modes: compile}"})
    with pytest.raises(ConfigError, match="`stage1_serving` is not valid YAML"):
        Settings.load(env={"CURATION_STAGE1_SERVING": "{mode: [compile"})
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        Settings.load(env={"CURATION_STAGE1_SERVING": "{mode: cuda_graph, device: cpu}"})
