import pytest

from bushu.errors import InvalidInput
from bushu.optimize.config import Budget, parse_budget, preset


@pytest.mark.parametrize(("text", "value", "relative"), [
    ("1%", 0.01, True), ("0.5 %", 0.005, True), ("0.01", 0.01, False), (".02", 0.02, False), ("0", 0.0, False),
])
def test_budget_syntax(text, value, relative):
    budget = parse_budget(text)
    assert budget.value == pytest.approx(value) and budget.relative is relative


@pytest.mark.parametrize("text", ["", "abc", "-1%", "1%%", "100%", "1e-2x", "%"])
def test_garbage_budgets_are_refused_with_the_syntax(text):
    with pytest.raises(InvalidInput, match="budget"):
        parse_budget(text)


def test_relative_budget_scales_with_the_baseline_absolute_does_not():
    assert Budget(value=0.01, relative=True).allowed_error(0.9, higher_is_better=True) == pytest.approx(0.009)
    assert Budget(value=0.01, relative=False).allowed_error(0.9, higher_is_better=True) == 0.01
    assert str(parse_budget("1%")) == "1%" and str(parse_budget("0.01")) == "0.01"


def test_presets_take_overrides_and_refuse_bad_ones():
    config = preset("quick", threads=4, metric="cosine")
    assert config.threads == 4 and config.metric == "cosine" and "ort-static" in config.families
    with pytest.raises(InvalidInput, match="unknown metric 'f1'"):
        preset("default", metric="f1")
    with pytest.raises(InvalidInput, match="unknown preset"):
        preset("fastest")
    with pytest.raises(InvalidInput, match="threads"):
        preset("default", threads=0)
    with pytest.raises(InvalidInput, match="unknown variant families"):
        preset("default", families=("ort-magic",))


def test_each_target_has_its_own_families_and_refuses_the_others():
    assert set(preset("default", target="cuda").families) == {"pytorch", "pytorch-compile", "ort-cuda"}
    assert preset("quick", target="cuda").families == ("pytorch",)
    assert "pytorch" not in preset("default").families and "pytorch" in preset("thorough").families
    with pytest.raises(InvalidInput, match=r"\['openvino'\] do not run on target 'cuda'"):
        preset("default", target="cuda", families=("pytorch", "openvino"))
    with pytest.raises(InvalidInput, match=r"\['ort-cuda'\] do not run on target 'cpu'"):
        preset("default", families=("ort-cuda",))
