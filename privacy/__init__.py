"""The privacy audit stage (`cspine audit`) and the release gate.

Modules, in the order the stage uses them: inputs (read data/ and samples/), embedders (CLIP, Inception,
pHash/dHash, pixels), feature_cache (per-image features shared across runs), search (chunked top-k),
calibrate (thresholds from holdout-to-train distances, DCR), audit (the per-method pipeline), outputs
(audit/ files and report.html), gate (what packaging reads), cli (the subcommand).
"""
