"""English → German name pairs from the gettext catalogues that the PyPI package `pycountry` ships.

Country, historic country, subdivision, language, language-family, currency and script names
(ISO 3166-1/2/3, 639-3/5, 4217, 15924), each catalogue an English msgid with its German msgstr.
About 14.5k distinct English names have a German entry; most subdivision and minor-language
names stay as they are in German, so copying the source is a strong baseline. The split is by
English name: each name is in the training or the held-out set, never both.
"""

from __future__ import annotations

import gettext
import random
from dataclasses import dataclass
from importlib import resources

from bushu.errors import NotFound

DOMAINS = ("iso3166-1", "iso3166-3", "iso3166-2", "iso639-5", "iso4217", "iso15924", "iso639-3")


@dataclass
class PairSplit:
    train: list[tuple[str, str]]
    test: list[tuple[str, str]]


def load_pairs(language: str = "de") -> list[tuple[str, str]]:
    """(English, translation) for every distinct English name with a translation, catalogue order."""
    try:
        locales = resources.files("pycountry") / "locales" / language / "LC_MESSAGES"
    except ModuleNotFoundError:
        raise NotFound("the translate app needs the PyPI package pycountry: pip install 'bushu[translate]'") from None
    pairs: dict[str, str] = {}
    for domain in DOMAINS:
        catalogue = locales / f"{domain}.mo"
        if not catalogue.is_file():
            raise NotFound(f"pycountry ships no {language} catalogue {domain}.mo")
        with catalogue.open("rb") as f:
            messages = gettext.GNUTranslations(f)._catalog  # msgid → msgstr, as gettext read it
        for source, target in messages.items():
            if isinstance(source, str) and source and target and source not in pairs:
                pairs[source.strip()] = target.strip()
    return list(pairs.items())


def load_split(language: str = "de", test_size: float = 0.1, seed: int = 0) -> PairSplit:
    pairs = load_pairs(language)
    random.Random(seed).shuffle(pairs)
    n = int(len(pairs) * test_size)
    return PairSplit(pairs[n:], pairs[:n])
