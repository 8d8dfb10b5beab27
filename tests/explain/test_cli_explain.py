"""`bushu explain PKG --input ...`: the answer and its explanation on the command line."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from bushu.apps.vision.data import load_digits_split
from bushu.cli import app
from fixtures.explain import png

runner = CliRunner()


def test_a_user_s_recommendations_with_factor_contributions_as_json(recsys_package):
    result = runner.invoke(app, ["explain", str(recsys_package), "--input", "user=42", "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["method"] == "factor_contributions" and answer["agrees"]
    assert [i["item"] for i in answer["items"]] == [i["item"] for i in answer["prediction"]["items"]]
    assert all(abs(sum(i["factors"]) + i["bias"] - i["score"]) < 1e-4 for i in answer["items"])


def test_a_digit_png_with_its_overlay_written(vision_package, tmp_path):
    split = load_digits_split()
    image = tmp_path / "digit.png"
    image.write_bytes(png(split.test_images[5]))
    overlay = tmp_path / "why.png"
    result = runner.invoke(app, ["explain", str(vision_package), "--input", f"image={image}", "--method", "saliency",
                                 "--overlay", str(overlay)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(str(split.test_labels[5])) and "saliency" in result.output
    with Image.open(overlay) as picture:
        assert picture.size == (256, 256)


@pytest.mark.parametrize("args, message", [
    (["--input", "picture=x"], "expected image=PATH, text=TEXT or user=ID"),
    (["--input", "user=1", "--input", "text=hi"], "of one kind"),
    (["--input", "image=/nonexistent.png"], "no such file"),
    (["--input", "user=x"], "a user id is an integer"),
    (["--input", "user=1", "--method", "lime"], "'method' must be one of"),
    (["--input", "user=999999"], "unknown user id"),
])
def test_bad_inputs_are_one_line_errors(recsys_package, args, message):
    result = runner.invoke(app, ["explain", str(recsys_package), *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
