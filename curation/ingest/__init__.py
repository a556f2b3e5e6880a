"""Step 1, ingest: source importers in their real formats, the merge rules, slices and leak checks."""
