"""Shared fixtures: every test database is isolated from the user's data.

FiftyOne reads its database settings at import, so they are set here, before any test imports
FiftyOne: the session runs its own mongod (see tests/mongod.py) unless FIFTYONE_DATABASE_URI
names an external one, and uses a per-run database name either way.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from mongod import start_private_mongod  # noqa: E402  (tests/ is on sys.path)

if not os.environ.get("FIFTYONE_DATABASE_URI"):
    os.environ["FIFTYONE_DATABASE_URI"] = start_private_mongod()
os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"curation_test_{os.getpid()}")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from curation.settings import Settings  # noqa: E402

ARTIFACTS = Path(os.environ.get("CURATION_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a unique dataset name and a temporary home (media, runs, caches)."""
    return Settings.load(env={}).replace(
        dataset_name=f"t_{uuid.uuid4().hex[:10]}", home=tmp_path / "home", user_name="tester", registry_dir=tmp_path / "registry"
    )


@pytest.fixture
def dataset(settings: Settings):
    """A fresh persistent platform dataset, deleted after the test."""
    from curation import store

    ds = store.open_dataset(settings)
    yield ds
    if not ds.deleted:
        ds.delete()


@pytest.fixture
def loaded(settings: Settings, dataset, corpus, monkeypatch):
    """``dataset`` with the module's demo ``corpus`` ingested, registry and home from the settings."""
    from curation.ingest.job import ingest_corpus

    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    monkeypatch.setenv("CURATION_REGISTRY_DIR", str(settings.registry_root))
    ingest_corpus(dataset, corpus, settings=settings, progress=False)
    return dataset


@pytest.fixture
def cli_env(settings: Settings, monkeypatch):
    """The CLI pointed at the test's dataset and home through its environment variables."""
    import fiftyone as fo

    from curation import store

    monkeypatch.setenv("CURATION_DATASET_NAME", settings.dataset_name)
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    monkeypatch.delenv("CURATION_SETTINGS", raising=False)
    # Start the database outside CliRunner: its captured stdout has no file descriptor for the
    # mongod service subprocess.
    store.connect(settings)
    fo.list_datasets()
    yield settings
    if fo.dataset_exists(settings.dataset_name):
        fo.delete_dataset(settings.dataset_name)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001
    """Drop the per-run test database so repeated runs do not accumulate data."""
    if "fiftyone" in __import__("sys").modules:
        import fiftyone.core.odm as foo

        try:
            foo.get_db_client().drop_database(os.environ["FIFTYONE_DATABASE_NAME"])
        except Exception:  # noqa: BLE001 - cleanup must never fail the run
            pass
