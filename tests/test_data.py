"""Shipped datasets: the seed datasets' columns and splits, a learnable pattern, a reproducible generator."""

import hashlib
from pathlib import Path

import pytest

import helpers
from helpers.course_data import DATASETS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_columns_and_splits_are_the_seeds(name):
    spec = DATASETS[name]
    ds = helpers.load_course_dataset(name, "tiny")
    assert tuple(ds) == spec.splits
    for split in ds.values():
        assert tuple(split.column_names) == spec.columns
        assert len(split) > 10


def test_dpo_pairs_give_the_seed_filter_work_and_prefer_the_right_answer():
    pairs = helpers.load_course_dataset("orca_dpo_pairs", "tiny")["train"]
    kept = pairs.filter(lambda r: r["status"] != "tie" and r["chosen_score"] >= 8 and not r["in_gsm8k_train"])
    assert 0.5 * len(pairs) < len(kept) < len(pairs)
    assert all(r["chosen"] != r["rejected"] for r in kept)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset 'alpaca'"):
        helpers.load_course_dataset("alpaca", "tiny")


def test_generator_reproduces_the_shipped_files(tmp_path):
    from course import make_datasets

    assert make_datasets.main(["--out", str(tmp_path / "helpers" / "data")]) == 0
    shipped = ROOT / "helpers" / "data"
    for f in shipped.iterdir():
        new = tmp_path / "helpers" / "data" / f.name
        assert hashlib.sha256(new.read_bytes()).digest() == hashlib.sha256(f.read_bytes()).digest(), f.name
