"""The BPE rule that lecture 01 and assignment a1 state, checked against Hugging Face `tokenizers`.

Lecture 01 writes BPE in its own cells and asserts, in the notebook, that its merges equal
`tokenizers.trainers.BpeTrainer`'s (ties included) and that `tokenizers.models.BPE` loaded with its
merges encodes held-out text to the same ids. These tests import nothing from the notebook: they pin
down the library behaviour that claim rests on, with known answers (Wikipedia's `aaabdaaabac`), and
check the rule as the lecture states it — written here once more, independently — against the library
on the course corpus. If a `tokenizers` release changed its tie-break or its stopping rule, these
fail before the lecture does.

The rule: count adjacent pairs in every text (never across texts); the most frequent pair wins; a tie
goes to the smallest pair (lower first id, then lower second id); the winner gets the next id and
replaces every occurrence left to right; repeat for `vocab_size - 256` merges, merging pairs seen
once too, and stop early only when no pair is left.
"""

from __future__ import annotations

import json
import random

import pytest
from tokenizers import Tokenizer, models, trainers

from helpers.tiny import corpus_lines

BYTES = [chr(b) for b in range(256)]  # byte b spelled as the Latin-1 character b: sorted like byte ids


def latin1(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def library_merges(texts: list[str], vocab_size: int) -> list[tuple[bytes, bytes]]:
    """The merges BpeTrainer learns from `texts` with the 256 bytes as its alphabet, as byte strings."""
    tok = Tokenizer(models.BPE())
    tok.train_from_iterator([latin1(t) for t in texts],
                            trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=BYTES, show_progress=False))
    return [(a.encode("latin-1"), b.encode("latin-1")) for a, b in json.loads(tok.to_str())["model"]["merges"]]


def library_encode(text: str, merges: list[tuple[bytes, bytes]]) -> list[int]:
    """Ids of `text` under `tokenizers.models.BPE` loaded with `merges` (ids 0-255 bytes, then 256, 257, ...)."""
    vocab = {c: i for i, c in enumerate(BYTES)}
    for a, b in merges:
        vocab[(a + b).decode("latin-1")] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a.decode("latin-1"), b.decode("latin-1")) for a, b in merges]))
    return tok.encode(latin1(text)).ids


def rule(texts: list[str], vocab_size: int, tie_break: str = "smallest") -> list[tuple[bytes, bytes]]:
    """The stated rule, written independently of the lecture (whole-sequence scans, a sort for the winner).
    `tie_break="first_seen"` is the rule lecture 01 used before: a plausible wrong implementation."""
    seqs = [[bytes([b]) for b in t.encode("utf-8")] for t in texts]
    ids = {bytes([b]): b for b in range(256)}
    merges = []
    while len(ids) < vocab_size:
        counts, first = {}, {}
        for seq in seqs:
            for k in range(len(seq) - 1):
                pair = (ids[seq[k]], ids[seq[k + 1]])
                counts[pair] = counts.get(pair, 0) + 1
                first.setdefault(pair, len(first))
        if not counts:
            break
        order = (lambda p: (-counts[p], p)) if tie_break == "smallest" else (lambda p: (-counts[p], first[p]))
        a, b = sorted(counts, key=order)[0]
        piece_a, piece_b = next(k for k, v in ids.items() if v == a), next(k for k, v in ids.items() if v == b)
        ids[piece_a + piece_b] = len(ids)
        merges.append((piece_a, piece_b))
        new_seqs = []
        for seq in seqs:
            out, k = [], 0
            while k < len(seq):
                if k + 1 < len(seq) and (seq[k], seq[k + 1]) == (piece_a, piece_b):
                    out.append(piece_a + piece_b)
                    k += 2
                else:
                    out.append(seq[k])
                    k += 1
            new_seqs.append(out)
        seqs = new_seqs
    return merges


# --- known answers --------------------------------------------------------------------------------

def test_wikipedia_example_z_y_x():
    """aa -> Z; then Za and ab tie and the smaller pair, ab, wins -> Y; then ZY -> X: XdXac."""
    merges = library_merges(["aaabdaaabac"], 256 + 3)
    assert merges == [(b"a", b"a"), (b"a", b"b"), (b"aa", b"ab")]
    assert library_encode("aaabdaaabac", merges) == [258, 100, 258, 97, 99]  # X d X a c


def test_a_tie_goes_to_the_smaller_pair_not_the_first_seen():
    # "ba" is seen before "ab" and both occur once: the smaller pair (97, 98) wins.
    assert library_merges(["ba", "ab"], 257) == [(b"a", b"b")]
    # after Z = aa (256), (Z, b) and (c, Z) tie twice each: (99, 256) is smaller than (256, 98)
    assert library_merges(["aab", "caa", "aab", "caa"], 258)[1] == (b"c", b"aa")


def test_pairs_seen_once_are_merged_and_training_stops_when_none_is_left():
    assert library_merges(["abc"], 256 + 10) == [(b"a", b"b"), (b"ab", b"c")]  # 2 merges, then nothing left
    assert library_merges(["ab", "cd"], 256 + 10) == [(b"a", b"b"), (b"c", b"d")]  # never across texts


def test_encoding_replays_merges_in_learned_order_not_by_frequency():
    merges = [(b"b", b"c"), (b"a", b"b")]  # bc learned first: "abc" -> a, bc
    assert library_encode("abc", merges) == [97, 256]
    assert library_encode("aaa", [(b"a", b"a")]) == [256, 97]  # overlapping: the left pair wins


# --- the stated rule against the library, on the course corpus ------------------------------------

@pytest.fixture(scope="module")
def corpus():
    lines = list(dict.fromkeys(corpus_lines()))
    random.Random(0).shuffle(lines)
    return lines[:120], "\n".join(lines[120:200])


def test_the_rule_equals_bpe_trainer_merge_for_merge(corpus):
    train, _ = corpus
    ours, theirs = rule(train, 256 + 60), library_merges(train, 256 + 60)
    assert len(ours) == 60 and ours == theirs


def test_first_seen_tie_break_would_disagree_with_the_library(corpus):
    """The old lecture rule (first-seen pair wins a tie) is not the library's: the comparison can fail."""
    train, _ = corpus
    assert rule(train, 256 + 60, tie_break="first_seen") != library_merges(train, 256 + 60)


def test_library_encoding_of_held_out_text_round_trips_and_compresses(corpus):
    train, heldout = corpus
    merges = library_merges(train, 256 + 60)
    ids = library_encode(heldout, merges)
    pieces = [bytes([i]) for i in range(256)] + [a + b for a, b in merges]
    assert b"".join(pieces[i] for i in ids).decode("utf-8") == heldout
    assert len(ids) < 0.6 * len(heldout.encode("utf-8"))
