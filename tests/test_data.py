"""Shipped datasets: the seed datasets' columns and splits, a learnable pattern, a reproducible generator."""

import hashlib
import json
import re
from pathlib import Path

import pytest

import helpers
from helpers.course_data import DATASETS

ROOT = Path(__file__).resolve().parents[1]
CARDS = json.loads((ROOT / "tests" / "data" / "hub_datasets.json").read_text(encoding="utf-8"))
# What each lecture reads from a dataset (the columns its code indexes), per split.
LESSONS_READ = {"lamini_docs": {"train": {"question", "answer"}, "test": {"question"}},
                "ultrachat": {"train_sft": {"messages"}, "test_sft": {"messages"}},
                "orca_dpo_pairs": {"train": {"system", "input", "chosen", "rejected", "status", "chosen_score",
                                             "in_gsm8k_train"}}}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_tiny_twin_has_the_real_datasets_splits_and_columns(name):
    """The shipped twin against the Hub dataset's card (tests/data/hub_datasets.json), not against our spec:
    every split the lessons read exists with the card's name, and every column they read has the card's name."""
    card = CARDS[name]
    ds = helpers.load_course_dataset(name, "tiny")
    assert set(LESSONS_READ[name]) <= set(ds) <= set(card["splits"])
    for split, cols in LESSONS_READ[name].items():
        assert cols <= set(ds[split].column_names) <= set(card["features"]), split
        assert len(ds[split]) > 10
    # the same names and columns as the full profile returns (one code path after the loader)
    assert tuple(ds) == DATASETS[name].splits
    assert all(tuple(d.column_names) == DATASETS[name].columns for d in ds.values())


# An outside oracle for the tiny pairs: facts the test knows, not the generator's tables.
CAPITALS = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
            "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo",
            "Greece": "Athens", "India": "New Delhi", "Chile": "Santiago", "Poland": "Warsaw",
            "Portugal": "Lisbon", "Ireland": "Dublin", "Austria": "Vienna", "Cuba": "Havana"}
COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "a banana": "yellow",
           "a tomato": "red", "an orange": "orange", "a plum": "purple"}


def correct(question: str, answer: str) -> bool:
    """Does `answer` state the right fact for `question` (sums computed here, capitals and colours known)?"""
    if m := re.fullmatch(r"What is (\d+) plus (\d+)\?", question):
        a, b = map(int, m.groups())
        return answer == f"{a} plus {b} is {a + b}."
    if m := re.fullmatch(r"What is the capital of (.+)\?", question):
        return answer == f"The capital of {m[1]} is {CAPITALS[m[1]]}."
    if m := re.fullmatch(r"What colour is (.+)\?", question):
        return answer == f"{m[1].capitalize()} is {COLOURS[m[1]]}."
    raise ValueError(f"unexpected question {question!r}")


def test_dpo_pairs_give_the_seed_filter_work_and_prefer_the_right_answer():
    from helpers import dpo

    pairs = helpers.load_course_dataset("orca_dpo_pairs", "tiny")["train"]
    kept = pairs.filter(dpo.keep_pair)
    assert 0.5 * len(pairs) < len(kept) < len(pairs)
    assert all(correct(r["input"], r["chosen"]) for r in pairs)  # every chosen answer is right ...
    assert not any(correct(r["input"], r["rejected"]) for r in pairs)  # ... and no rejected one is
    refusals = sum(not re.search(r"\d| is ", r["rejected"]) for r in kept)
    assert 0.25 < refusals / len(kept) < 0.75  # both kinds of bad answer: curt refusals and wrong facts


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
