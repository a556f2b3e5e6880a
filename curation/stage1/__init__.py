"""Stage-1 roadwork classifier: pure tensor/array code, no FiftyOne (plugins and pipelines call it).

views (global + g×g tiles), backbone (DINOv3 presets and loading), head (per-view logit),
aggregate (MIL pooling), features (gate features), model (Stage1Model, versions on disk),
calibrate (threshold, temperature, ECE), metrics (MCC, reward estimate), validator_view
(validator-style queries); gate, risk, crossfit and hardness build on their outputs.
"""
