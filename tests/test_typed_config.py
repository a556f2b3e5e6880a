"""The one YAML loader: every failure is a ConfigError that names the file and says what is wrong."""

from __future__ import annotations

import pytest

from curation.errors import ConfigError
from curation.typed_config import read_yaml, read_yaml_mapping


def test_a_mapping_round_trips_and_an_empty_file_is_an_empty_mapping(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("quota: 200\nsplits: [train, pool]\n")
    assert read_yaml_mapping(path, what="Pipeline file") == {"quota": 200, "splits": ["train", "pool"]}
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml_mapping(tmp_path / "empty.yaml", what="Pipeline file") == {}
    assert read_yaml(tmp_path / "empty.yaml", what="Prompt bank") is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a: [1, 2\n", r"Settings file .*bad\.yaml is not valid YAML at line 2, column 1"),
        ("a: 1\n  b: 2\n", r"is not valid YAML at line 2"),
        ("- 1\n- 2\n", r"must hold a mapping, got list"),
        ("just text\n", r"must hold a mapping, got str"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_yaml_mapping(path, what="Settings file")


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"Preset file .*nope\.yaml does not exist"):
        read_yaml_mapping(tmp_path / "nope.yaml", what="Preset file")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"binary\.yaml cannot be read"):
        read_yaml(binary, what="Preset file")
