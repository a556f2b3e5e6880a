"""One place per option: CLI options and App forms take defaults, help and validation from the
step's Config (``typed_config.setting``), and model-owned values are never typed by hand."""

from __future__ import annotations

import asyncio
import inspect
import typing

import pytest

from curation.app import operators as cops
from curation.cli import app
from curation.evaluate.gate_job import GateJobConfig
from curation.label.detector import DetectorConfig
from curation.label.human_labels import OrangeQueueConfig
from curation.mine.job import MiningConfig
from curation.stage1.gate import GateConfig
from curation.stage2.routing import RoutingConfig
from curation.synth.admission import AdmissionConfig
from curation.synth.pipeline import GeneratorConfig
from curation.typed_config import setting_info


def _commands(typer_app, prefix=""):
    for info in typer_app.registered_commands:
        yield f"{prefix}{info.name or info.callback.__name__}", info.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, f"{prefix}{group.name} ")


def config_options() -> dict[tuple[str, str], tuple[type, str, object]]:
    """``{(command, parameter): (config class, setting, the option's default)}`` for every CLI
    option declared with ``config_option``."""
    found = {}
    for name, callback in _commands(app):
        function = inspect.unwrap(callback)
        hints = typing.get_type_hints(function, include_extras=True)
        for param in inspect.signature(function).parameters.values():
            for meta in getattr(hints.get(param.name), "__metadata__", ()):
                if hasattr(meta, "config_setting"):
                    found[(name, param.name)] = (*meta.config_setting, param.default)
    return found


OPTIONS = config_options()


def test_every_config_backed_cli_option_defaults_to_its_config():
    assert OPTIONS, "no CLI option is declared with config_option"
    for (command, param), (cls, name, default) in OPTIONS.items():
        assert default == setting_info(cls, name).default, f"`curation {command} --{param}` default differs from {cls.__name__}.{name}"


@pytest.mark.parametrize(
    ("command", "param", "cls"),
    [
        ("mine", "quota", MiningConfig),
        ("mine", "min_hardness", MiningConfig),
        ("gate", "alpha", GateJobConfig),
        ("gate", "delta", GateJobConfig),
        ("gate", "kind", GateConfig),
        ("evidence", "r_accept", RoutingConfig),
        ("evidence", "default", RoutingConfig),
        ("label orange-candidates", "min_orange_share", OrangeQueueConfig),
        ("detector propose", "conf", DetectorConfig),
        ("detector propose", "iou", DetectorConfig),
        ("detector propose", "imgsz", DetectorConfig),
        ("synth", "max_hamming", AdmissionConfig),
        ("synth", "random_weights", GeneratorConfig),
    ],
)
def test_options_the_app_also_offers_come_from_the_config(command, param, cls):
    assert OPTIONS[(command, param)][0] is cls


def test_evidence_has_no_typed_threshold_default():
    # the decision threshold belongs to the model: `--threshold` only overrides, it has no default
    function = inspect.unwrap(dict(_commands(app))["evidence"])
    assert inspect.signature(function).parameters["threshold"].default is None


def _form(settings, dataset, operator: str, params: dict) -> dict:
    from fiftyone.operators.executor import resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    cops.configure_plugins(settings)
    prop = asyncio.run(resolve_type(OperatorRegistry(), cops.operator_uri(operator), {"dataset_name": dataset.name, "params": params}))
    return prop.to_json()["type"]["properties"]


def test_app_forms_take_defaults_from_the_config_and_reject_bad_values_as_they_are_filled(settings, dataset):
    fields = _form(settings, dataset, "mine_hard_cases", {})
    assert fields["quota"]["default"] == MiningConfig().quota and not fields["quota"]["invalid"]
    assert fields["min_hardness"]["type"]["max"] == 1.0 and fields["min_hardness"]["view"]["label"] == setting_info(MiningConfig, "min_hardness").help

    fields = _form(settings, dataset, "mine_hard_cases", {"quota": 0, "min_hardness": 0.5})
    assert fields["quota"]["invalid"] and "'quota'" in fields["quota"]["error_message"]
    assert not fields["min_hardness"]["invalid"]

    fields = _form(settings, dataset, "compute_gate", {"alpha": 1.5})
    assert fields["alpha"]["invalid"] and "1.5" in fields["alpha"]["error_message"]
    fields = _form(settings, dataset, "stage2_evidence", {"default": "greedy"})
    assert fields["default"]["invalid"] and "recall, balanced" in fields["default"]["error_message"]


def test_config_validation_is_the_same_from_the_cli(cli_env):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["mine", "--min-hardness", "1.5"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "less than or equal to 1" in result.output  # the config's bounds, before any work
