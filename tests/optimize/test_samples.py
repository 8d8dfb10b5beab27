import numpy as np
import pytest

from bushu.errors import InvalidInput, NotFound
from bushu.optimize import preset
from bushu.optimize.samples import ensure_disjoint, load_samples
from bushu.optimize.splits import make_splits
from bushu.package import read_manifest


@pytest.fixture
def sets(tiny_package, tmp_path, rng):
    x = rng.standard_normal((40, 6)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x[:30], labels=np.arange(30) % 3)
    np.savez(tmp_path / "cal.npz", x=x[30:])
    np.savez(tmp_path / "overlap.npz", x=np.concatenate([x[30:], x[5:7]]))
    return read_manifest(tiny_package), tiny_package, tmp_path


def test_npz_sets_load_with_labels_and_keys(sets):
    manifest, package, d = sets
    evaluation = load_samples(d / "eval.npz", manifest, package)
    assert len(evaluation) == 30 and evaluation.labels is not None and evaluation.inputs["x"].shape == (30, 6)
    assert evaluation.batch(64)["x"].shape == (64, 6)
    ensure_disjoint(load_samples(d / "cal.npz", manifest, package), evaluation)


def test_calibration_overlapping_eval_is_refused(sets):
    manifest, package, d = sets
    evaluation = load_samples(d / "eval.npz", manifest, package)
    with pytest.raises(InvalidInput, match="shares 2 of its 12 samples"):
        ensure_disjoint(load_samples(d / "overlap.npz", manifest, package), evaluation)


def test_calibration_selection_and_confirmation_are_disjoint_and_cover_the_eval_file(sets):
    manifest, package, d = sets
    x = np.load(d / "eval.npz")["x"]
    np.savez(d / "dup.npz", x=np.concatenate([x, x[:4]]), labels=np.arange(34) % 3)  # 4 exact duplicates
    splits = make_splits(manifest, package, preset("default"), d / "dup.npz")
    parts = [splits.calibration, splits.selection, splits.confirmation]
    assert [len(p) for p in parts] == [10, 10, 10]  # a third held out for calibration, the rest halved
    keys = [set(p.keys) for p in parts]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert set().union(*keys) == set(load_samples(d / "eval.npz", manifest, package).keys)
    assert "4 exact duplicate(s)" in splits.how[0] and "disjoint" in splits.how[-1]
    assert splits.confirmation.labels is not None and len(splits.confirmation.labels) == 10


def test_a_confirmation_file_replaces_the_confirmation_half_and_must_be_disjoint(sets):
    manifest, package, d = sets
    np.savez(d / "confirm.npz", x=np.random.default_rng(7).standard_normal((5, 6)).astype(np.float32))
    splits = make_splits(manifest, package, preset("default"), d / "eval.npz", d / "cal.npz", d / "confirm.npz")
    assert (len(splits.calibration), len(splits.selection), len(splits.confirmation)) == (10, 30, 5)
    assert splits.confirmation.source == str(d / "confirm.npz")
    with pytest.raises(InvalidInput, match="calibration and eval must be different samples"):
        make_splits(manifest, package, preset("default"), d / "eval.npz", d / "cal.npz", d / "cal.npz")
    with pytest.raises(InvalidInput, match="confirmation and eval must be different samples"):
        make_splits(manifest, package, preset("default"), d / "eval.npz", d / "cal.npz", d / "overlap.npz")


def test_too_few_samples_to_split_three_ways_fail_clearly(sets):
    manifest, package, d = sets
    np.savez(d / "two.npz", x=np.load(d / "eval.npz")["x"][:2])
    with pytest.raises(InvalidInput, match="too few to hold out calibration, selection and confirmation"):
        make_splits(manifest, package, preset("default"), d / "two.npz")


def test_bad_files_say_what_is_wrong(sets, tmp_path):
    manifest, package, d = sets
    with pytest.raises(NotFound, match="no such file"):
        load_samples(d / "absent.npz", manifest, package)
    (d / "data.csv").write_text("1,2\n")
    with pytest.raises(InvalidInput, match="expected a .npz"):
        load_samples(d / "data.csv", manifest, package)
    np.savez(d / "wrong.npz", y=np.zeros((3, 6), np.float32))
    with pytest.raises(InvalidInput, match="missing input"):
        load_samples(d / "wrong.npz", manifest, package)
    np.savez(d / "short.npz", x=np.zeros((3, 6), np.float32), labels=np.zeros(2))
    with pytest.raises(InvalidInput, match="differ in length"):
        load_samples(d / "short.npz", manifest, package)
    (d / "texts.txt").write_text("a sentence\n")
    with pytest.raises(InvalidInput, match="needs a text package"):
        load_samples(d / "texts.txt", manifest, package)


def test_text_calibration_is_widened_with_default_texts_none_of_them_in_selection_or_confirmation(
        minilm_package, tmp_path):
    from fixtures.corpus import sentences

    texts = sentences(90)
    (tmp_path / "eval.txt").write_text("\n".join(texts) + "\n")
    config = preset("default", default_calibration=40)
    splits = make_splits(read_manifest(minilm_package), minilm_package, config, tmp_path / "eval.txt")
    user = set(texts)
    assert len(splits.selection) == len(splits.confirmation) == 30
    assert splits.broad is not None and len(splits.broad) == 40 and not set(splits.broad.texts) & user
    assert set(splits.calibration.texts) == (user - set(splits.selection.texts) - set(splits.confirmation.texts)) | set(
        splits.broad.texts)
    assert "default texts (tweets and reviews" in splits.calibration.source
    assert splits.calibration.inputs["input_ids"].shape[0] == 70
    off = make_splits(read_manifest(minilm_package), minilm_package, preset("default", default_calibration=0),
                      tmp_path / "eval.txt")
    assert off.broad is None and len(off.calibration) == 30
