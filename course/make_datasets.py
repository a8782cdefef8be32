"""Write the tiny profile's shipped datasets to helpers/data/ (deterministic: run it, diff is empty).

Each file has the columns of the Hub dataset it stands in for, and a pattern a tiny model can
learn in a few dozen steps:

- lamini_docs.jsonl     (lamini/lamini_docs: question, answer, split)
  Questions about a made-up `lamini`-style API; each answer follows from the question's words.
- ultrachat.jsonl       (HuggingFaceH4/ultrachat_200k: prompt, prompt_id, messages, split)
  Short conversations (capitals, arithmetic, colours) whose answers repeat the question's facts.
- orca_dpo_pairs.jsonl  (argilla/distilabel-intel-orca-dpo-pairs: system, input, chosen, rejected,
  status, chosen_score, in_gsm8k_train)
  `chosen` answers helpfully and correctly; `rejected` is a curt refusal or a wrong fact. Some rows
  are ties, low-scored or GSM8K-contaminated so that the seed's filter has something to remove.
- tokenizer_corpus.txt  text the tiny tokenizers are trained on: the above plus code, numbers,
  emoji and non-English sentences.

Usage: python -m course datasets [--out DIR]
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "helpers" / "data"

ACTIONS = ["load", "save", "train", "evaluate", "delete", "list", "tokenize", "stream"]
OBJECTS = ["model", "dataset", "adapter", "prompt", "checkpoint", "embedding"]
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo",
    "Greece": "Athens", "India": "New Delhi", "Chile": "Santiago", "Poland": "Warsaw",
    "Portugal": "Lisbon", "Ireland": "Dublin", "Austria": "Vienna", "Cuba": "Havana",
}
COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "a banana": "yellow",
           "a tomato": "red", "an orange": "orange", "a plum": "purple"}
CURT = ["I don't know.", "Figure it out yourself.", "Not my problem.", "No idea, sorry.", "Ask someone else."]
SYSTEMS = ["", "You are a helpful assistant.", "You are an AI assistant. Answer truthfully."]
EXTRA_TEXT = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i ** 2)\n",
    "import torch\nx = torch.randn(2, 3)\n",
    "The year 2024 had 366 days; 3.14159 is close to pi and 1,000,000 is a million.",
    "Tokenization turns text into integers. Byte-pair encoding merges frequent pairs.",
    "Emoji are several bytes each: 🤗 🚀 😀 👍🏽 ❤️",
    "Le chat est sur la table. Où est la bibliothèque ?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El niño come una manzana. ¿Dónde está la estación?",
    "Привет, как дела? Это пример текста на русском языке.",
    "这是一个中文句子。我们正在学习分词。",
    "これは日本語の文です。トークン化を学びます。",
    "नमस्ते, आप कैसे हैं?",
    "مرحبا، كيف حالك؟",
    "HELLO WORLD hello world Hello World hElLo WoRlD",
    "    indented   text\twith\ttabs and  double  spaces",
    # chat-format markers, so the stand-in tokenizers learn pieces for them as the real ones have
    "[INST] <<SYS>> <</SYS>> [/INST] <|system|> <|user|> <|assistant|> system user assistant",
    "Cutting Knowledge Date: December 2023 Today Date: 26 Jul 2024",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
]


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def lamini_rows(rng: random.Random) -> list[dict]:
    rows = []
    for action in ACTIONS:
        for obj in OBJECTS:
            a = f"Yes. Call `llm.{action}_{obj}()` to {action} a {obj}; it returns the {obj} when done."
            for q in (f"How do I {action} a {obj} with Lamini?",
                      f"What is the function to {action} a {obj} in Lamini?",
                      f"Can Lamini {action} a {obj}?"):
                rows.append({"question": q, "answer": a})
    rng.shuffle(rows)
    n_test = len(rows) // 8
    for i, r in enumerate(rows):
        r["split"] = "test" if i < n_test else "train"
    return rows


def chat_turn(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(3)
    if kind == 0:
        country, capital = rng.choice(sorted(CAPITALS.items()))
        return f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    if kind == 1:
        a, b = rng.randrange(10), rng.randrange(10)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    thing, colour = rng.choice(sorted(COLOURS.items()))
    return f"What colour is {thing}?", f"{thing.capitalize()} is {colour}."


def ultrachat_rows(rng: random.Random, n: int = 240) -> list[dict]:
    rows = []
    for i in range(n):
        messages = []
        for _ in range(1 + (rng.random() < 0.3)):
            q, a = chat_turn(rng)
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        prompt = messages[0]["content"]
        rows.append({"prompt": prompt, "prompt_id": _id(f"{i}:{prompt}"), "messages": messages,
                     "split": "test_sft" if i % 8 == 0 else "train_sft"})
    return rows


def dpo_rows(rng: random.Random, n: int = 320) -> list[dict]:
    rows = []
    for i in range(n):
        question, good = chat_turn(rng)
        if rng.random() < 0.5:
            bad = rng.choice(CURT)
        else:  # a confident wrong answer of the same shape
            _, bad = chat_turn(rng)
            if bad == good:
                bad = rng.choice(CURT)
        roll = rng.random()
        status = "tie" if roll < 0.08 else ("unchanged" if roll < 0.6 else "swapped")
        rows.append({
            "system": rng.choice(SYSTEMS),
            "input": question,
            "chosen": good,
            "rejected": bad,
            "status": status,
            "chosen_score": float(rng.choice([6, 7, 8, 8, 9, 9, 10, 10, 10])),
            "in_gsm8k_train": rng.random() < 0.05,
        })
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course datasets", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT})")
    out = parser.parse_args(argv).out
    rng = random.Random(0)
    out.mkdir(parents=True, exist_ok=True)
    lamini, chat, dpo = lamini_rows(rng), ultrachat_rows(rng), dpo_rows(rng)
    write_jsonl(out / "lamini_docs.jsonl", lamini)
    write_jsonl(out / "ultrachat.jsonl", chat)
    write_jsonl(out / "orca_dpo_pairs.jsonl", dpo)
    corpus = [r["question"] + " " + r["answer"] for r in lamini]
    corpus += [m["content"] for r in chat for m in r["messages"]]
    corpus += [r["input"] + " " + r["chosen"] + " " + r["rejected"] for r in dpo]
    corpus += SYSTEMS[1:] + CURT + EXTRA_TEXT
    (out / "tokenizer_corpus.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    print(f"wrote {len(lamini)} + {len(chat)} + {len(dpo)} rows and {len(corpus)} corpus lines to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
