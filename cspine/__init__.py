"""synthetic-cspine: shared core used by every stage.

This package holds only what all stages agree on: the typed config (`cspine.config`), the run directory
contract (`cspine.rundir`), atomic file writes (`cspine.atomic`) and image file helpers (`cspine.images`).
The stages themselves live in the top-level packages named in ../shared/DESIGN.md: `training`, `privacy`,
`evaluation`, `reader_study`, `dataset_card` and `release` (which also holds the `cspine` CLI).
"""

__version__ = "0.1.0"
