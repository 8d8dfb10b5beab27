"""`bushu generate PKG "prompt" [--stream]`: a generation package run here, through the same
engine (scheduler, KV cache, sampling) the server uses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bushu.cli.common import app, out, user_errors


@app.command()
@user_errors
def generate(
    package: Annotated[Path, typer.Argument(help="a generation package (bushu pack of a GPT-2 or T5 directory)")],
    prompt: Annotated[str, typer.Argument(help="the text to continue (or, for an encoder-decoder, to transform)")],
    stream: Annotated[bool, typer.Option(help="print tokens as they come")] = False,
    max_tokens: Annotated[int | None, typer.Option(help="new tokens at most (default: the package's)")] = None,
    temperature: Annotated[float | None, typer.Option(help="0: greedy")] = None,
    top_k: Annotated[int | None, typer.Option(help="sample among the k likeliest (0: off)")] = None,
    top_p: Annotated[float | None, typer.Option(help="nucleus sampling mass")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="1: off")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="stop string (repeatable)")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
) -> None:
    """Generate text from a prompt with a generation package."""
    from bushu.generate.config import parse_params
    from bushu.generate.package import open_core
    from bushu.generate.sequence import Sequence
    from bushu.package.store import verify_package

    manifest = verify_package(package)
    core = open_core(package, manifest)
    ids = core.codec.encode(prompt, "prompt")
    given = {"max_tokens": max_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
             "repetition_penalty": repetition_penalty, "stop": stop or None, "seed": seed}
    params = parse_params({k: v for k, v in given.items() if v is not None}, core.config, room=core.room(ids))

    def show(event) -> None:
        if stream:
            sys.stdout.write(event.text)
            sys.stdout.flush()

    (seq,) = core.run_to_completion([Sequence(ids, params, sink=show)])
    if stream:
        sys.stdout.write("\n")
    else:
        out.print(seq.detokenizer.text, highlight=False, markup=False)
