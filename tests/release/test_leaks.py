"""The leak scan finds numeric source ids where they stand as ids, not inside numbers (CSXA ids are numbers)."""

import pandas as pd

from release.leaks import find_leaks, redact


def test_numeric_id_found_as_token_not_inside_numbers(tmp_path):
    needles = {"113201", "datasets-PNG/113201.png"}
    (tmp_path / "a.md").write_text("nearest training image: 113201.png\n")
    (tmp_path / "b.md").write_text("KID 0.1132014, FID 3.113201, seed 91132015\n")
    hits = find_leaks(tmp_path, needles)
    assert [h for h in hits if "a.md" in h] and not [h for h in hits if "b.md" in h]
    assert redact("id 113201 and 0.1132014", needles) == "id [redacted] and 0.1132014"


def test_parquet_scores_are_not_scanned_but_text_columns_are(tmp_path):
    df = pd.DataFrame({"image_id": ["final-000001"], "inception_score": [0.11320134], "seed": [113201]})
    df.to_parquet(tmp_path / "clean.parquet")
    assert find_leaks(tmp_path, {"113201"}) == []
    pd.DataFrame({"image_id": ["from 113201"]}).to_parquet(tmp_path / "leaky.parquet")
    assert find_leaks(tmp_path, {"113201"}) == [f"{tmp_path / 'leaky.parquet'}: '113201'"]


def test_safetensors_header_is_scanned(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, tmp_path / "clean.safetensors", metadata={"note": "trained"})
    assert find_leaks(tmp_path, {"datasets-PNG/113201.png", "113201"}) == []
    save_file({"w": torch.zeros(3)}, tmp_path / "leaky.safetensors", metadata={"source": "datasets-PNG/113201.png"})
    hits = find_leaks(tmp_path, {"datasets-PNG/113201.png", "113201"})
    assert sorted(hits) == sorted(f"{tmp_path / 'leaky.safetensors'}: {n!r}" for n in ("113201", "datasets-PNG/113201.png"))
