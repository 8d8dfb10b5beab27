"""Three disjoint parts of the user's data: calibration, selection, confirmation.

A search that calibrates, selects and reports on the same samples promises only what those
samples show. So: int8 ranges are calibrated on one part; the choice is made on a second; and
it must hold again on a third that played no part in either, else the next-fastest variant that
holds is chosen. Samples are told apart by identity (their text, or their tensors' bytes):
exact duplicates in the eval file are dropped first, so no sample can sit in two parts.

Without a calibration file, calibration is held out of the eval file; without a confirmation
file, the eval samples left after that are split in half, at random with the config's seed.
For text, the calibration part is widened with bushu's default texts (`default_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bushu.errors import InvalidInput
from bushu.optimize.config import OptimizeConfig
from bushu.optimize.default_data import default_texts
from bushu.optimize.samples import Samples, ensure_disjoint, from_texts, is_text_package, load_samples
from bushu.package.manifest import Manifest

#: Fewer selection or confirmation samples than this cannot carry a choice.
MIN_PART = 2


@dataclass
class Splits:
    calibration: Samples
    selection: Samples
    confirmation: Samples
    train: Samples | None
    #: How the parts were made, for the report.
    how: list[str]
    #: bushu's default texts mixed into calibration, alone (None when none were).
    broad: Samples | None = None
    #: More of bushu's default texts for distillation (None unless the search distils a text package).
    unlabelled: Samples | None = None


def _distinct(samples: Samples) -> tuple[Samples, int]:
    first: dict[bytes, int] = {}
    for i, key in enumerate(samples.keys):
        first.setdefault(key, i)
    dropped = len(samples) - len(first)
    return (samples.take(np.array(sorted(first.values()), dtype=np.int64)) if dropped else samples), dropped


def _cut(samples: Samples, count: int, rng: np.random.Generator, first: str, rest: str | None = None
         ) -> tuple[Samples, Samples]:
    order = rng.permutation(len(samples))
    return (samples.take(np.sort(order[:count]), first),
            samples.take(np.sort(order[count:]), rest))


def _widen(calibration: Samples, exclude: list[Samples], manifest: Manifest, root: Path,
           config: OptimizeConfig) -> tuple[Samples, Samples | None, str | None]:
    """The user's calibration texts plus bushu's default texts (none of them in `exclude`), and those alone."""
    if config.default_calibration == 0 or not is_text_package(manifest):
        return calibration, None, None
    if calibration.texts is None:
        return calibration, None, ("the calibration data are token ids, not texts: bushu's default texts could not "
                                   "be mixed in (pass a .txt to widen calibration)")
    taken = frozenset(t for s in exclude for t in s.texts or []) | frozenset(calibration.texts)
    extra = default_texts(config.default_calibration, config.seed, exclude=taken)
    if not extra.texts:
        return calibration, None, "no default texts are available here (install bushu[text] and bushu[translate])"
    source = f"{calibration.source} + {extra.describe()}"
    return (from_texts(calibration.texts + extra.texts, manifest, root, source),
            from_texts(extra.texts, manifest, root, extra.describe()), None)


def make_splits(manifest: Manifest, root: Path, config: OptimizeConfig, eval_file: str | Path,
                calibration_file: str | Path | None = None, confirm_file: str | Path | None = None,
                train_file: str | Path | None = None) -> Splits:
    """Read the user's files and cut them into disjoint parts (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    evaluation, dropped = _distinct(load_samples(eval_file, manifest, root))
    how = [f"{dropped} exact duplicate(s) in {evaluation.source} were dropped"] if dropped else []
    if calibration_file is not None:
        calibration = load_samples(calibration_file, manifest, root)
        ensure_disjoint(calibration, evaluation)
    else:
        count = min(config.calibration_samples, len(evaluation) // 3)
        if count < 1:
            raise InvalidInput(f"{evaluation.source}: {len(evaluation)} distinct samples are too few to hold out "
                               "calibration, selection and confirmation parts; pass --calibration or more samples")
        calibration, evaluation = _cut(evaluation, count, rng, f"{evaluation.source} (held out for calibration)")
        how.append(f"no --calibration file: {count} random eval samples were held out for calibration")
    if len(calibration) > config.calibration_samples:
        calibration = calibration.take(np.arange(config.calibration_samples))
    if confirm_file is not None:
        confirmation, _ = _distinct(load_samples(confirm_file, manifest, root))
        ensure_disjoint(confirmation, evaluation, "confirmation")
        ensure_disjoint(calibration, confirmation)
        selection = evaluation
        how.append(f"selection: {len(selection)} samples of {selection.source}; confirmation: "
                   f"{len(confirmation)} samples of {confirmation.source}")
    else:
        half = len(evaluation) // 2
        confirmation, selection = _cut(evaluation, half, rng, f"{evaluation.source} (confirmation half)",
                                       f"{evaluation.source} (selection half)")
        how.append(f"the {len(evaluation)} remaining eval samples were split at random (seed {config.seed}): "
                   f"{len(selection)} for selection, {len(confirmation)} for confirmation")
    for part in (selection, confirmation):
        if len(part) < MIN_PART:
            raise InvalidInput(f"{part.source}: {len(part)} sample(s) are too few to judge a variant on; "
                               "pass more eval samples (or a --confirm file)")
    calibration, broad, problem = _widen(calibration, [selection, confirmation], manifest, root, config)
    how.append(problem or f"calibration: {calibration.source}")
    train = load_samples(train_file, manifest, root) if train_file is not None else None
    if train is not None:
        for part in (selection, confirmation):
            ensure_disjoint(train, part, "training")
    unlabelled, note = _unlabelled([selection, confirmation, calibration], manifest, root, config)
    how += [note] if note else []
    how.append("no sample is in two parts: parts are disjoint by sample identity (text, or tensor bytes)")
    return Splits(calibration, selection, confirmation, train, how, broad, unlabelled)


def _unlabelled(exclude: list[Samples], manifest: Manifest, root: Path, config: OptimizeConfig
                ) -> tuple[Samples | None, str | None]:
    """bushu's default texts for students to learn from, when the search distils a text package and
    the eval parts are texts (token ids could hide a default text the students must not see)."""
    if "distill" not in config.families or config.distill_texts == 0 or not is_text_package(manifest):
        return None, None
    if any(part.texts is None for part in exclude):
        return None, ("distillation: the eval data are token ids, not texts, so bushu's default texts were not "
                      "added to the students' inputs (they could hold an eval text)")
    taken = frozenset(t for part in exclude for t in part.texts or [])
    extra = default_texts(config.distill_texts, config.seed + 1, exclude=taken)
    if not extra.texts:
        return None, None
    return (from_texts(extra.texts, manifest, root, extra.describe()),
            f"distillation: students also learn from {extra.describe()}, none of them in selection or confirmation")
