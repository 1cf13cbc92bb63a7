"""Benchmarks: how fast and how big. Each ``bench/bench_*.py`` module has a ``main()`` that measures the
project's code beside a baseline run in the same process and prints ratios. ``make bench`` runs them all;
``python -m bench NAME`` runs one (NAME without the ``bench_`` prefix)."""
