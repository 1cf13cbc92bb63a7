"""synthetic-cspine: shared core used by every stage.

This package holds only what all stages agree on: the typed config (`cspine.config`), the run directory
contract (`cspine.rundir`), atomic file writes (`cspine.atomic`), image file helpers (`cspine.images`), and
what more than one stage computes from images: the FID Inception network (`cspine.inception`, used by the
audit and by evaluation) and the per-image feature cache they share (`cspine.feature_cache`), so that no
stage imports another for them (tests/test_imports.py checks the import rules).
The stages themselves live in the top-level packages named in ../shared/DESIGN.md: `training`, `privacy`,
`evaluation`, `reader_study`, `dataset_card` and `release` (which also holds the `cspine` CLI).
"""

__version__ = "0.1.0"
