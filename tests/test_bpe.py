"""From-scratch BPE: known answers (Wikipedia's aaabdaaabac), round trips, and HF `tokenizers` as an outside oracle."""

from __future__ import annotations

import doctest
import json
from collections import Counter

import pytest

from helpers import bpe
from helpers.tiny import corpus_lines


def test_wikipedia_example():
    merges, vocab = bpe.train("aaabdaaabac", vocab_size=256 + 3)
    assert list(merges) == [(97, 97), (256, 97), (257, 98)]
    assert [vocab[i] for i in merges.values()] == [b"aa", b"aaa", b"aaab"]
    assert bpe.encode("aaabdaaabac", merges) == [258, 100, 258, 97, 99]
    assert bpe.compression_ratio("aaabdaaabac", merges) == pytest.approx(11 / 5)


def test_stats_and_merge():
    assert bpe.get_stats([1, 2, 3, 1, 2]) == Counter({(1, 2): 2, (2, 3): 1, (3, 1): 1})
    assert bpe.merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert bpe.merge([97, 97, 97], (97, 97), 256) == [256, 97]


def test_train_stops_when_nothing_repeats_and_rejects_small_vocab():
    merges, _ = bpe.train("abc", vocab_size=300)
    assert merges == {}
    with pytest.raises(ValueError, match="at least 256"):
        bpe.train("abc", vocab_size=10)


@pytest.fixture(scope="module")
def trained():
    return bpe.train(corpus_lines()[:150], vocab_size=256 + 40)


@pytest.mark.parametrize("text", ["", "hello world", "Héllo wörld — naïve café", "日本語のテキスト",
                                  "emoji 🤗🚀 👍🏽 ❤️", "Привет", "\n\t  spaces  "])
def test_round_trip(trained, text):
    merges, vocab = trained
    ids = bpe.encode(text, merges)
    assert bpe.decode(ids, vocab) == text
    assert len(ids) <= len(text.encode("utf-8"))


def test_merges_compress_the_training_text(trained):
    merges, _ = trained
    text = "\n".join(corpus_lines()[:150])
    curve = bpe.compression_curve(text, merges, [0, 10, 40])
    ratios = [r for _, r in curve]
    assert ratios[0] == 1.0 and ratios[0] < ratios[1] < ratios[2]


def test_compression_curve_equals_encoding_with_the_first_n_merges(trained):
    merges, _ = trained
    text = "\n".join(corpus_lines()[-60:])  # text the merges were not trained on
    learned = list(merges.items())
    for n, ratio in bpe.compression_curve(text, merges, [0, 7, 23, len(merges)]):
        assert ratio == pytest.approx(bpe.compression_ratio(text, dict(learned[:n])))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (what HF's ByteLevel uses to spell merges)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def test_same_merges_as_hf_tokenizers_until_the_first_tie():
    """Byte-level BPE, no splitting into words: HF's trainer must pick the same pairs as ours,
    at least until two pairs tie for most frequent (tie-breaking rules legitimately differ)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    lines, n_merges = corpus_lines()[:200], 40
    merges, vocab = bpe.train(lines, vocab_size=256 + n_merges)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=256 + n_merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    u2b = {c: b for b, c in _bytes_to_unicode().items()}
    hf = [tuple(bytes(u2b[c] for c in part) for part in pair)
          for pair in json.loads(tok.to_str())["model"]["merges"]]
    ours = [(vocab[a], vocab[b]) for a, b in merges]

    chunks, first_tie = bpe.to_bytes(lines), None
    for step, pair in enumerate(merges):
        top = Counter()
        for ids in chunks:
            bpe.get_stats(ids, top)
        (_, c1), (_, c2) = top.most_common(2)
        if c1 == c2:
            first_tie = step
            break
        chunks = [bpe.merge(ids, pair, merges[pair]) for ids in chunks]
    assert first_tie is not None and first_tie >= 5  # the comparison covers a meaningful prefix
    assert hf[:first_tie] == ours[:first_tie]


def test_doctests():
    assert doctest.testmod(bpe).failed == 0
