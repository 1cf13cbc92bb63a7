"""The expert reader study: a blinded visual Turing test of the synthetic radiographs (`cspine study`).

design.py (trials, positions, rater orders) -> assets.py (one encoding for real and synthetic) -> build.py
(study/) -> server.py + static/ (rater web app, admin view) -> store.py (SQLite answers) -> stats.py +
analyze.py (results.json, summary.md, figures). simulate.py adds flagged simulated raters for demos and tests.
"""
