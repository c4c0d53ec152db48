"""Text analysis: the same words meet whatever their case, width, inflection or separators."""

from __future__ import annotations

import random
import string

from search_service.tokenizer import Tokenizer, general_words, joined_ascii_words


def test_terms_are_case_folded_and_stemmed():
    tok = Tokenizer()

    assert tok.terms("Kittens KITTEN kitten") == ["kitten"] * 3
    assert tok.terms("running runs") == tok.terms("run run")


def test_terms_normalise_unicode_compatibility_forms():
    tok = Tokenizer()

    assert tok.terms("Ｃａｔ") == tok.terms("cat")
    assert tok.terms("ﬁsh") == tok.terms("fish")
    assert tok.terms("STRASSE") == tok.terms("straße")


def test_filename_splits_on_separators_humps_digits_and_extension():
    tok = Tokenizer()

    words = tok.filename_words("holidays/IMG_2041-BeachDay.jpeg")

    assert words == ["img", "2041", "beach", "day", "jpeg"]


def test_filename_keeps_acronyms_and_accented_words_whole():
    tok = Tokenizer()

    assert tok.filename_words("HTTPServer café.PNG") == ["http", "server", "café", "png"]


def test_apostrophes_inside_words_do_not_split_them():
    tok = Tokenizer()

    assert tok.words("don't") == ["dont"]


def test_ascii_shortcut_gives_the_words_of_the_general_path():
    tok = Tokenizer()
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "_-. '/\\\t!?AZaz09"
    texts = ["IMG_2041-BeachDay.jpeg", "HTTPServer", "aBCd", "ABc", "iPhone12Pro", "don't 'quoted'"]
    texts += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(20_000)
    ]

    for text in texts:
        assert tok.words(text) == general_words(text), text


def test_joined_values_split_into_each_values_words():
    """One regex over a batch's joined values gives each value's words (then a NUL), as
    Tokenizer.words gives them one value at a time; values it cannot join give None."""
    tok = Tokenizer()
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + " _-.'/"
    values = ["don't", "HTTPServer-Log.png", "IMG_0001.JPG", "", "'quoted' it's", "a'b"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(300)]

    raw = joined_ascii_words(values)

    assert raw is not None
    got: list[list[str]] = [[]]
    for word in raw:
        if word == "\x00":
            got.append([])
        else:
            got[-1].append(word.lower())
    assert got[:-1] == [tok.words(v) for v in values]
    assert got[-1] == []
    assert joined_ascii_words(["café", "ok"]) is None
    assert joined_ascii_words(["a\x00b", "ok"]) is None


def test_joined_filenames_split_into_the_words_of_their_last_path_part():
    tok = Tokenizer()
    names = ["a/b/HTTPServer-Log.png", "dir\\BeachDay7.JPEG", "IMG_0001.jpg", "", "x/", "/y"]
    names += ["c:\\photos/2019\\trip/DSC01234.NEF", "no_dirs.tiff", "dir/"]

    raw = joined_ascii_words(names, last_path_part=True)

    assert raw is not None
    got = " ".join(w.lower() for w in raw).split("\x00")
    assert [g.split() for g in got[:-1]] == [tok.filename_words(n) for n in names]
