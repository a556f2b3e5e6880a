"""Step 2, predict: Stage-1 over a FiftyOne collection, its fields written in bulk."""
