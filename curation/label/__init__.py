"""Step 5, label: human labels with history, SAM-assisted boxes and detector pre-labels."""
