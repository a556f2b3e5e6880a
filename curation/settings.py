"""One typed settings object: defaults, then a YAML file, then environment variables.

Environment variables are named ``CURATION_<FIELD>`` (for example ``CURATION_DATASET_NAME``);
the database URI also honours FiftyOne's own ``FIFTYONE_DATABASE_URI`` so an external cluster
configured for FiftyOne keeps working.

Example:
    >>> from curation.settings import Settings
    >>> Settings.load(env={}).dataset_name
    'roadwork'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from curation.errors import ConfigError
from curation.serving_config import ServingConfig
from curation.typed_config import check_settings, from_mapping, read_yaml_mapping, setting

ENV_PREFIX = "CURATION_"
SETTINGS_FILE_ENV = "CURATION_SETTINGS"


def _default_home() -> Path:
    return Path(os.environ.get("CURATION_HOME", Path.cwd() / "data")).expanduser()


@dataclass(frozen=True)
class RaySettings:
    """Where and how ``--engine ray`` runs Stage-1 (:mod:`curation.predict.ray_engine`)."""

    address: str | None = setting(None, help="Ray cluster to join (`ray://host:10001` or `host:6379`); None starts a local Ray here.")
    num_actors: int = setting(1, low=1, help="Model actors: each holds the Stage-1 model once (one per GPU on a GPU cluster).")
    gpus_per_actor: float = setting(0.0, low=0.0, help="GPUs each model actor reserves (0: CPU actors).")
    cpus_per_actor: float = setting(1.0, low=0.0, help="CPUs each model actor reserves (its torch threads on a CPU actor).")
    batch_size: int = setting(16, low=1, help="Images per decode task and per model call.")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class Settings:
    """Where things live and who is working.

    Attributes:
        dataset_name: the persistent FiftyOne dataset holding every source.
        database_uri: an external MongoDB; None uses the embedded mongod FiftyOne starts.
        home: root for media, caches and run records when the specific dirs are not set.
        media_dir: content-addressed image store (images are written once, by hash).
        models_dir: model presets; None uses the repo's / package's ``models/``.
        registry_dir: registered model versions and the champion pointer; None uses ``<home>/registry``.
        plugins_dir: FiftyOne plugins directory; None uses the repo's / package's ``plugins/``.
        user_name: recorded on every human label (open-source FiftyOne has no login).
        app_host: the App binds here; keep loopback unless you mean to expose it.
        app_port: the App's port.
        stage1_serving: how every command that loads a Stage-1 model serves it (compiled or
            CUDA-graph steps, the bulk loader; :class:`~curation.serving_config.ServingConfig`).
            None runs the plain eager model on ``--device`` (cpu by default). As an environment
            variable it is a YAML mapping: ``CURATION_STAGE1_SERVING='{mode: cuda_graph, path: bulk}'``.
        query_policy: the StreetVision contract validator-view prediction, training, calibration
            and promotion follow (a name in ``models/streetvision/policies``); the default is the
            newest public one. Empty or null: the platform's own model of the 2025-11 queries
            (``stage1/validator_view.py``, what the demo runs on).
        ray: the Ray cluster and actor sizes ``--engine ray`` uses (:class:`RaySettings`); as an
            environment variable a YAML mapping: ``CURATION_RAY='{address: "head:6379", num_actors: 4}'``.
    """

    dataset_name: str = "roadwork"
    database_uri: str | None = None
    home: Path = field(default_factory=_default_home)
    media_dir: Path | None = None
    models_dir: Path | None = None
    registry_dir: Path | None = None
    plugins_dir: Path | None = None
    user_name: str = field(default_factory=lambda: os.environ.get("USER", "labeler"))
    app_host: str = "127.0.0.1"
    app_port: int = 5151
    stage1_serving: ServingConfig | None = None
    query_policy: str | None = "streetvision-2026-05"
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self) -> None:
        if not self.dataset_name or not self.dataset_name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(
                f"`dataset_name` must be letters, digits, '-' or '_'; got {self.dataset_name!r}."
            )
        if not 1 <= int(self.app_port) <= 65535:
            raise ConfigError(f"`app_port` must be in [1, 65535]; got {self.app_port}.")
        if not self.user_name.strip():
            raise ConfigError("`user_name` must not be empty: it is recorded on every human label.")

    # Resolved locations -------------------------------------------------------------------
    @property
    def media_root(self) -> Path:
        return Path(self.media_dir) if self.media_dir else Path(self.home) / "media"

    @property
    def runs_root(self) -> Path:
        return Path(self.home) / "runs"

    @property
    def cache_root(self) -> Path:
        return Path(self.home) / "cache"

    @property
    def registry_root(self) -> Path:
        """Registered model versions and ``champion.json``: ``registry_dir``, else ``<home>/registry``.

        Always under the home (never the checkout's ``models/``), so two homes never share a champion.
        """
        return Path(self.registry_dir) if self.registry_dir else Path(self.home) / "registry"

    @property
    def models_root(self) -> Path:
        from curation.assets import asset_dir

        return Path(self.models_dir) if self.models_dir else asset_dir("models")

    @property
    def plugins_root(self) -> Path:
        from curation.assets import asset_dir

        return Path(self.plugins_dir) if self.plugins_dir else asset_dir("plugins")

    # Construction --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from defaults, an optional YAML file and the environment.

        Args:
            path: YAML file; defaults to ``$CURATION_SETTINGS`` when set.
            env: environment mapping (``os.environ`` when None); injectable for tests.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = path or env.get(SETTINGS_FILE_ENV)
        if path:
            path = Path(path)
            values.update(read_yaml_mapping(path, what="Settings file"))
        if env.get("FIFTYONE_DATABASE_URI"):
            values["database_uri"] = env["FIFTYONE_DATABASE_URI"]
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        if "home" not in values and "CURATION_HOME" in env:
            values["home"] = env["CURATION_HOME"]
        return from_mapping(cls, values, source=str(path) if path else "environment")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
