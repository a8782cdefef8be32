"""The course's datasets: the seed's Hub dataset in `full`, a shipped JSONL twin in `tiny`.

Both profiles return a `datasets.DatasetDict` with the same split names and columns, so the lesson
code after the loader is the same.

In `full` only the splits the course uses are fetched: each split's files are named by the pattern of
the dataset card (`data/<split>-*`, recorded with the cards' splits and columns in
tests/data/hub_datasets.json). `load_dataset(hub_id, split=...)` alone would not do: `datasets`
downloads and prepares every split before it selects one (UltraChat 200k: ~1.6 GB for 3,000 rows).
A split or column the course needs that the Hub copy lacks is an error that says which, never
silently dropped.

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

    def hub_data_files(self) -> dict[str, str]:
        """{split: file pattern in the Hub repository} for the splits the course uses.

        >>> DATASETS["ultrachat"].hub_data_files()
        {'train_sft': 'data/train_sft-*', 'test_sft': 'data/test_sft-*'}
        """
        return {split: f"data/{split}-*" for split in self.splits}


class DatasetSchemaError(ValueError):
    """The Hub dataset lacks a split or column the course needs (it changed, or a wrong id was given)."""


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
        return _load_hub(spec)
    raw = load_dataset("json", data_files=shipped_path(name), split="train")
    if "split" not in raw.column_names:
        return DatasetDict({spec.splits[0]: raw.select_columns(list(spec.columns))})
    return DatasetDict({
        s: raw.filter(lambda r, s=s: r["split"] == s).select_columns(list(spec.columns)) for s in spec.splits
    })


def _load_hub(spec: DatasetSpec):
    """The splits `spec` needs from its Hub repository (only their files), with the needed columns."""
    from datasets import DatasetDict, load_dataset
    from datasets.exceptions import DataFilesNotFoundError

    parts = {}
    for split, pattern in spec.hub_data_files().items():
        try:
            parts[split] = load_dataset(spec.hub_id, data_files={split: pattern}, split=split)
        except (FileNotFoundError, DataFilesNotFoundError) as err:
            raise DatasetSchemaError(
                f"{spec.name} ({spec.hub_id}) has no split {split!r} (no file matches {pattern!r}); the course "
                f"needs the splits {list(spec.splits)}. ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    for split, ds in parts.items():
        missing = [c for c in spec.columns if c not in ds.column_names]
        if missing:
            raise DatasetSchemaError(
                f"{spec.name} ({spec.hub_id}), split {split!r}, lacks the column(s) {missing} the course "
                f"needs; it has {ds.column_names}.")
    return DatasetDict({split: ds.select_columns(list(spec.columns)) for split, ds in parts.items()})
