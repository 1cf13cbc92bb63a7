"""Packaging (Parquet shards, manifest, cards), publishing to the Hub, and the `cspine` CLI that chains the stages."""
