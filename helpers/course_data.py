"""The course's datasets: the seed's Hub dataset in `full`, a shipped JSONL twin in `tiny`.

Both profiles return a `datasets.DatasetDict` with the same split names and columns, so the lesson
code after the loader is the same.

>>> ds = load_course_dataset("lamini_docs", "tiny")
>>> sorted(ds), ds["train"].column_names
(['test', 'train'], ['question', 'answer'])
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    hub_id: str
    file: str  # in helpers/data/
    columns: tuple[str, ...]
    splits: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in [
        DatasetSpec("lamini_docs", "lamini/lamini_docs", "lamini_docs.jsonl",
                    ("question", "answer"), ("train", "test")),
        DatasetSpec("ultrachat", "HuggingFaceH4/ultrachat_200k", "ultrachat.jsonl",
                    ("prompt", "prompt_id", "messages"), ("train_sft", "test_sft")),
        DatasetSpec("orca_dpo_pairs", "argilla/distilabel-intel-orca-dpo-pairs", "orca_dpo_pairs.jsonl",
                    ("system", "input", "chosen", "rejected", "status", "chosen_score", "in_gsm8k_train"),
                    ("train",)),
    ]
}


def shipped_path(name: str) -> str:
    """Path of the JSONL the tiny profile loads for dataset `name`."""
    spec = _spec(name)
    return str(resources.files("helpers").joinpath("data", spec.file))


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}.") from None


def load_course_dataset(name: str, profile: str = "auto"):
    """Load dataset `name` for `profile` as a DatasetDict with the seed's splits and columns."""
    from datasets import DatasetDict, load_dataset

    from .device import resolve_profile

    spec = _spec(name)
    profile = resolve_profile(profile, announce=False)
    if profile == "full":
        ds = load_dataset(spec.hub_id)
        keep = [s for s in spec.splits if s in ds]
        return DatasetDict({s: ds[s].select_columns(list(spec.columns)) for s in keep})
    raw = load_dataset("json", data_files=shipped_path(name), split="train")
    if "split" not in raw.column_names:
        return DatasetDict({spec.splits[0]: raw.select_columns(list(spec.columns))})
    return DatasetDict({
        s: raw.filter(lambda r, s=s: r["split"] == s).select_columns(list(spec.columns)) for s in spec.splits
    })
