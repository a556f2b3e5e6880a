"""Step 3, evaluate: per-slice metrics, failure views, and the failure-gate job (Learn-then-Test)."""
