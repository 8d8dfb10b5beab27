import numpy as np
import pytest

from bushu.errors import InvalidInput, NotFound
from bushu.optimize.samples import ensure_disjoint, load_samples, split_for_calibration
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


def test_held_out_calibration_is_disjoint_from_what_remains(sets):
    manifest, package, d = sets
    cal, rest = split_for_calibration(load_samples(d / "eval.npz", manifest, package), 100, seed=0)
    assert len(cal) == 15 and len(rest) == 15
    assert not set(cal.keys) & set(rest.keys)


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
