"""The only door to MongoDB and to FiftyOne internals: the platform dataset, bulk writes, runs
(FiftyOne runs on the dataset) and locks, shared views (the model registry and locks' liveness rules are
:mod:`curation.store.registry` and :mod:`curation.store.locks`).

FiftyOne is imported lazily so ``curation --help`` stays fast and so the database URI from the
settings is in place before FiftyOne reads its configuration. Jobs call ``store.<function>``; the
functions live in the modules below, by concern.
"""

from curation.store.bulk import (  # noqa: F401
    _DETECTION_RESERVED,
    _FIELD_KINDS,
    _WRITE_CHUNK,
    IDENTITY_FIELDS,
    STAGED_SUFFIX,
    DuplicateHashError,
    Settled,
    _from_fo,
    _to_fo,
    declare_like,
    drop_staged_fields,
    dump_fields,
    ensure_identity_index,
    find_ids_by_hash,
    identity_rows,
    insert_states,
    leak_inputs,
    project_columns,
    promote_staged,
    read_states,
    restore_fields,
    set_values_by_id,
    settle_staged,
    write_changes,
    write_floats_by_oid,
)
from curation.store.dataset import (  # noqa: F401
    MIGRATIONS,
    SCHEMA_VERSION_KEY,
    SLICE_CONFIG_KEY,
    DatasetStatus,
    _clean,
    _declare_image_media,
    _fo_field,
    check_embedded_database,
    connect,
    database_location,
    declare_schema,
    migrate,
    open_dataset,
    record_slice_config,
    root_dataset,
    served_database_dir,
    slice_config,
    status,
)
from curation.store.locks import (  # noqa: F401
    LOCKS_COLLECTION,
    _platform_collection,
    acquire_lock,
    clear_lock,
    exclusive,
    list_locks,
    mark_lock,
    refresh_lock,
    release_lock,
)
from curation.store.runs import delete_run, list_runs, record_run, runs_with_tag  # noqa: F401
from curation.store.views import (  # noqa: F401
    LEAK_CHECK_KEY,
    source_split_label_counts,
    trainable_samples,
    training_view,
)
