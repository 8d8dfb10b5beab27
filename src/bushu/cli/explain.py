"""`bushu explain`: a package's answer to natural inputs, and why its source module gives it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bushu.cli.common import app, out, user_errors
from bushu.errors import InvalidInput, NotFound

KEYS = ("image", "text", "user")


def natural_request(inputs: list[str], k: int | None) -> Any:
    """`--input image=PATH | text=... | user=ID`, repeated for several items of one kind."""
    from bushu.serve.predict import NaturalRequest

    kinds, items = set(), []
    for given in inputs:
        key, sep, value = given.partition("=")
        if not sep or key not in KEYS:
            raise InvalidInput(f"--input {given!r}: expected image=PATH, text=TEXT or user=ID")
        kinds.add(key)
        if key == "image":
            path = Path(value)
            if not path.is_file():
                raise NotFound(f"--input {given!r}: no such file {path}")
            items.append(path.read_bytes())
        elif key == "user":
            try:
                items.append(int(value))
            except ValueError:
                raise InvalidInput(f"--input {given!r}: a user id is an integer") from None
        else:
            items.append(value)
    if len(kinds) != 1:
        raise InvalidInput("give every --input of one kind: image=, text= or user=")
    return NaturalRequest(items, batched=len(items) > 1, k=k)


def _print(explanation: dict[str, Any], index: int, overlay: Path | None, count: int) -> None:
    prediction = explanation["prediction"]
    answer = prediction.get("label") or ", ".join(str(i["item"]) for i in prediction.get("items", [])) or "embedding"
    delta = explanation.get("convergence_delta")
    out.print(f"[bold]{answer}[/]  ({explanation['method'].replace('_', ' ')}"
              + (f", convergence delta {delta:.1e}" if delta is not None else "") + ")", highlight=False)
    if explanation.get("note"):
        out.print(f"[red]{explanation['note']}[/]", highlight=False)
    if "tokens" in explanation:
        key = "polarity" if explanation["tokens"] and "polarity" in explanation["tokens"][0] else "score"
        table = Table("token", key, title=f"towards {explanation['target']}" if key == "score" else "towards positive")
        for token in explanation["tokens"]:
            value = token[key]
            table.add_row(token["token"], f"[{'green' if value >= 0 else 'red'}]{value:+.4f}[/]")
        out.print(table)
    if "items" in explanation:
        table = Table("item", "score", "bias", "factor contributions", "similar seen (context)")
        for item in explanation["items"]:
            table.add_row(str(item["item"]), f"{item['score']:.3f}", f"{item['bias']:.3f}",
                          " ".join(f"{f:+.2f}" for f in item["factors"]),
                          ", ".join(str(s["item"]) for s in item["similar_seen"]))
        out.print(table)
    if "overlay_png" in explanation and overlay is not None:
        path = overlay if count == 1 else overlay.with_name(f"{overlay.stem}-{index}{overlay.suffix}")
        path.write_bytes(base64.b64decode(explanation["overlay_png"]))
        out.print(f"overlay → {path}", highlight=False)


@app.command()
@user_errors
def explain(
    package: Annotated[Path, typer.Argument(help="package directory")],
    input: Annotated[list[str], typer.Option("--input", help="image=PATH, text=TEXT or user=ID (repeat for several)")],
    method: Annotated[str, typer.Option(help="images: integrated_gradients or saliency")] = "integrated_gradients",
    steps: Annotated[int | None, typer.Option(help="integration steps (default: the explainer's)")] = None,
    target: Annotated[str | None, typer.Option(help="the label to explain (default: the served answer's)")] = None,
    query: Annotated[str | None, typer.Option(help="embedding models: explain the similarity to this text")] = None,
    k: Annotated[int | None, typer.Option(min=1, help="recommendations: items to explain")] = None,
    overlay: Annotated[Path | None, typer.Option(help="images: write the attribution overlay PNG here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole answer as JSON")] = False,
    decrypt_key: Annotated[Path | None, typer.Option(help="AES key file for an encrypted package (else $BUSHU_KEY)")] = None,
) -> None:
    """Explain a package's answers: Captum attributions on its PyTorch source module, next to the
    default variant's prediction (said so when the two differ)."""
    import bushu
    from bushu.explain import ExplainOptions, explainer_for
    from bushu.package.encryption import load_key
    from bushu.package.store import verify_package
    from bushu.serve.predict import Predictor

    if not package.is_dir():
        raise NotFound(f"{package}: not a package directory")
    request = natural_request(input, k)
    options = ExplainOptions.parse({"method": method, "steps": steps, "target": target, "query": query})
    manifest = verify_package(package)
    key = load_key(decrypt_key)
    predictor = Predictor(manifest, package)
    inputs = predictor.tensors(request)
    model = bushu.load(package, verify=False, key=key)
    outputs = model.infer(inputs, ["embedding"] if predictor.hf_step is not None else None)
    served = predictor.answers(outputs, inputs, request.k)
    explained = explainer_for(package, manifest, key).explain(request, served, options)
    answers = [{"prediction": s, **e} for s, e in zip(served, explained)]
    if as_json:
        out.print_json(json.dumps(answers if request.batched else answers[0]))
        return
    for index, answer in enumerate(answers):
        _print(answer, index, overlay, len(answers))
