"""Byte-pair encoding from scratch, on UTF-8 bytes: the algorithm behind GPT-2, Llama 3 and Qwen.

The vocabulary starts as the 256 possible bytes, so every string can be encoded. Training repeatedly
finds the most frequent adjacent pair of ids and gives it a new id (256, 257, …); encoding replays
those merges in the order they were learned; decoding concatenates the bytes each id stands for.

The classic walk-through (Wikipedia's "aaabdaaabac"): three merges turn 11 bytes into 5 ids.

>>> merges, vocab = train("aaabdaaabac", vocab_size=256 + 3)
>>> [(pair, vocab[new]) for pair, new in merges.items()]
[((97, 97), b'aa'), ((256, 97), b'aaa'), ((257, 98), b'aaab')]
>>> encode("aaabdaaabac", merges)
[258, 100, 258, 97, 99]
>>> decode([258, 100, 258, 97, 99], vocab)
'aaabdaaabac'
>>> compression_ratio("aaabdaaabac", merges)
2.2
"""

from __future__ import annotations

from collections import Counter

Pair = tuple[int, int]


def get_stats(ids: list[int], counts: Counter | None = None) -> Counter:
    """Count every adjacent pair of ids (overlapping pairs count: "aaa" holds two (a, a)).

    >>> get_stats([1, 2, 3, 1, 2])
    Counter({(1, 2): 2, (2, 3): 1, (3, 1): 1})

    Pass `counts` to add to an existing tally (used when training on several texts).
    """
    counts = Counter() if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] += 1
    return counts


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([97, 97, 97], (97, 97), 256)   # "aaa": the left pair wins, the last 'a' stays
    [256, 97]
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def to_bytes(texts: str | list[str]) -> list[list[int]]:
    """UTF-8 bytes of each text, as lists of ints (0–255). Pairs never cross from one text to the next.

    >>> to_bytes("hé")
    [[104, 195, 169]]
    """
    texts = [texts] if isinstance(texts, str) else texts
    return [list(t.encode("utf-8")) for t in texts]


def train(texts: str | list[str], vocab_size: int, verbose: bool = False) -> tuple[dict[Pair, int], dict[int, bytes]]:
    """Learn `vocab_size - 256` merges from `texts`; returns (merges, vocab).

    `merges` maps a pair of ids to its new id, in the order learned (dicts keep insertion order);
    `vocab` maps every id to the bytes it stands for. Ties between equally frequent pairs go to the
    pair seen first. Training stops early when no pair occurs twice (a merge would not compress).

    >>> merges, vocab = train("abab", vocab_size=257)
    >>> merges, vocab[256]
    ({(97, 98): 256}, b'ab')
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (the byte alphabet), got {vocab_size}")
    chunks = to_bytes(texts)
    merges: dict[Pair, int] = {}
    vocab = {i: bytes([i]) for i in range(256)}
    for new_id in range(256, vocab_size):
        counts = Counter()
        for ids in chunks:
            get_stats(ids, counts)
        if not counts:
            break
        pair = max(counts, key=counts.get)  # first-seen pair wins a tie (max keeps the first maximum)
        if counts[pair] < 2:
            break
        chunks = [merge(ids, pair, new_id) for ids in chunks]
        merges[pair] = new_id
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        if verbose:
            print(f"merge {new_id - 255}: {pair} -> {new_id} {vocab[new_id]!r} ({counts[pair]} occurrences)")
    return merges, vocab


def encode(text: str, merges: dict[Pair, int]) -> list[int]:
    """Token ids of `text`: its UTF-8 bytes, then the learned merges, earliest-learned first.

    >>> encode("abcab", {(97, 98): 256})
    [256, 99, 256]
    >>> encode("", {})
    []
    """
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        stats = get_stats(ids)
        # The pair present in `ids` that was learned earliest (lowest new id); unknown pairs rank last.
        pair = min(stats, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = merge(ids, pair, merges[pair])
    return ids


def decode(ids: list[int], vocab: dict[int, bytes]) -> str:
    """Text of `ids`: concatenated bytes, decoded as UTF-8 (a cut multi-byte character shows as �).

    >>> decode([104, 195, 169], {i: bytes([i]) for i in range(256)})
    'hé'
    >>> decode([195], {i: bytes([i]) for i in range(256)})
    '�'
    """
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def compression_ratio(text: str, merges: dict[Pair, int]) -> float:
    """UTF-8 bytes per token after encoding `text` (1.0 with no merges; higher is shorter).

    >>> compression_ratio("abab", {(97, 98): 256})
    2.0
    """
    n_bytes = len(text.encode("utf-8"))
    return n_bytes / max(1, len(encode(text, merges)))


def compression_curve(text: str, merges: dict[Pair, int], steps: list[int]) -> list[tuple[int, float]]:
    """(number of merges, compression ratio) using only the first n learned merges, for each n in `steps`.

    >>> [(n, round(r, 2)) for n, r in compression_curve("aaabdaaabac", train("aaabdaaabac", 259)[0], [0, 1, 3])]
    [(0, 1.0), (1, 1.22), (3, 2.2)]

    One pass per merge instead of one `encode` per step: applying the merges one after another, in the
    order learned, gives what `encode` gives (a merge only creates pairs that contain its new id, and
    those were all learned later), so the sequence after merge n is the encoding with n merges.
    """
    n_bytes = len(text.encode("utf-8"))
    ids = list(text.encode("utf-8"))
    wanted, curve = set(steps), []
    for n, (pair, new_id) in enumerate([(None, None), *merges.items()]):
        if n:
            ids = merge(ids, pair, new_id)
        if n in wanted:
            curve.append((n, n_bytes / max(1, len(ids))))
    return [point for step in steps for point in curve if point[0] == step]


def render_tokens(ids: list[int], vocab: dict[int, bytes]) -> list[str]:
    """Readable pieces for `ids` (bytes decoded leniently), e.g. to print a tokenization.

    >>> render_tokens([258, 100], train("aaabdaaabac", 259)[1])
    ['aaab', 'd']
    """
    return [vocab[i].decode("utf-8", errors="replace") for i in ids]
