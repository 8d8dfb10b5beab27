"""The translator: T5's architecture through `transformers`, small enough to train here in minutes,
with one byte-level BPE vocabulary shared by English and German (names are often copied whole)."""

from __future__ import annotations

from typing import Any

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
#: About 1.2 M parameters with a 2,000-token vocabulary (input and output embeddings shared).
SIZES = {"width": 128, "layers": 2, "heads": 4}


def build_tokenizer(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    # T5 reads a source ending in </s> and ends its output with it
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    assert (tokenizer.token_to_id(PAD), tokenizer.token_to_id(EOS)) == (0, 1)
    return tokenizer


def t5(vocab_size: int, *, width: int, layers: int, heads: int) -> Any:
    import transformers

    config = transformers.T5Config(
        vocab_size=vocab_size, d_model=width, d_kv=width // heads, d_ff=2 * width, num_layers=layers,
        num_decoder_layers=layers, num_heads=heads, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        relative_attention_num_buckets=16, relative_attention_max_distance=64, dropout_rate=0.1)
    return transformers.T5ForConditionalGeneration(config)
