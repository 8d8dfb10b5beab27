"""The language model's baselines on the same tokens: interpolated Kneser–Ney trigrams, and unigrams.

The Kneser–Ney estimate is nltk's `KneserNeyInterpolated(3)`: the trigram level discounts raw
counts, the bigram level continuation counts, the unigram level is the continuation unigram —
with one change: nltk gives a token never seen in training probability 0 (an infinite
perplexity), so here the unigram level is add-one over the tokenizer's vocabulary
(`add_one=False` is nltk's formula exactly; a test checks it against nltk). nltk itself fits the
29k training texts in about a minute here, but scoring 100 held-out texts took over 8 minutes
(it recounts continuations for every query), so the counts are kept in dictionaries built once.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

BOS, EOS = "<s>", "</s>"


def padded(tokens: Sequence[int | str]) -> list[int | str]:
    """A text as the trigrams see it: two starts before, one end after."""
    return [BOS, BOS, *tokens, EOS]


class KneserNeyTrigram:
    def __init__(self, texts: Iterable[Sequence[int | str]], *, vocab_size: int, discount: float = 0.75,
                 add_one: bool = True) -> None:
        self.discount, self.add_one = discount, add_one
        self.trigrams: dict[tuple, Counter] = defaultdict(Counter)
        bigrams: set[tuple] = set()
        for text in texts:
            seq = padded(text)
            bigrams.update(zip(seq, seq[1:]))
            for a, b, w in zip(seq, seq[1:], seq[2:]):
                self.trigrams[a, b][w] += 1
        self.totals = {c: sum(n.values()) for c, n in self.trigrams.items()}
        # bigram level: distinct followers of b; distinct left neighbours of (b, w); distinct (a, b, ·)
        self.followers = Counter(b for b, _ in bigrams)
        self.continuation: Counter = Counter()
        self.middle: Counter = Counter()
        for (a, b), following in self.trigrams.items():
            self.middle[b] += len(following)
            for w in following:
                self.continuation[b, w] += 1
        # unigram level: distinct left neighbours of w over distinct bigrams
        self.left = Counter(w for _, w in bigrams)
        self.bigram_types = len(bigrams)
        self.vocab_size = vocab_size + 1  # and the end

    def _unigram(self, w: int | str) -> float:
        if self.add_one:
            return (self.left[w] + 1) / (self.bigram_types + self.vocab_size)
        return self.left[w] / self.bigram_types

    def probability(self, w: int | str, context: tuple) -> float:
        """P(w | the two tokens before it)."""
        a, b = context
        d = self.discount
        p = self._unigram(w)
        if b in self.followers:
            total = self.middle[b]
            p = max(self.continuation[b, w] - d, 0.0) / total + d * self.followers[b] / total * p
        following = self.trigrams.get((a, b))
        if following:
            total = self.totals[a, b]
            p = max(following[w] - d, 0.0) / total + d * len(following) / total * p
        return p

    def log_likelihood(self, text: Sequence[int | str]) -> tuple[float, int]:
        """Natural-log likelihood of every token of `text` and its end, and how many that is."""
        seq = padded(text)
        total = sum(math.log(self.probability(w, (a, b))) for a, b, w in zip(seq, seq[1:], seq[2:]))
        return total, len(seq) - 2


class Unigram:
    """Add-one unigram frequencies over the tokenizer's whole vocabulary (and the end token)."""

    def __init__(self, texts: Iterable[Sequence[int]], vocab_size: int, eos: int) -> None:
        counts: Counter = Counter()
        for text in texts:
            counts.update(text)
            counts[eos] += 1
        total = sum(counts.values()) + vocab_size
        self.eos = eos
        self.log_p = {t: math.log((counts[t] + 1) / total) for t in range(vocab_size)}

    def log_likelihood(self, text: Sequence[int]) -> tuple[float, int]:
        return sum(self.log_p[t] for t in text) + self.log_p[self.eos], len(text) + 1


def perplexity(model: KneserNeyTrigram | Unigram, texts: Iterable[Sequence[int]]) -> float:
    total, count = 0.0, 0
    for text in texts:
        ll, n = model.log_likelihood(text)
        total, count = total + ll, count + n
    return math.exp(-total / count)
