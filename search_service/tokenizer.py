"""Text to index terms: unicode-normalised, case-folded words with light (Snowball) stemming.

The same analysis runs on documents and queries, so "Kittens", "kitten" and "KITTEN" meet on
one term. Filenames are split further: separators, camelCase, letter/digit boundaries and the
extension each start a new word ("IMG_2041-BeachDay.jpeg" -> img 2041 beach day jpeg).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import Stemmer

# A word is a run of letters/digits (any script); apostrophes inside words are dropped first.
_WORD = re.compile(r"[^\W_]+")
_APOSTROPHE = re.compile(r"(?<=\w)['’](?=\w)")
# The same words for ASCII text, humps and letter/digit switches split by the pattern itself:
# the capitals before a capitalised word ("HTTP" of "HTTPServer"), a capitalised or lower-case
# word, a run of capitals, a run of digits.
_ASCII_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# The same, with a NUL (the separator of joined values) as a match of its own.
_ASCII_WORD_OR_END = re.compile(_ASCII_WORD.pattern + "|\x00")
# Every path part but the last of each NUL-separated value.
_DIRECTORIES = re.compile(r"[^\x00/]*/")


def normalise(text: str) -> str:
    """NFKC (full-width letters, ligatures, compatibility forms) then case folding."""
    return unicodedata.normalize("NFKC", text).casefold()


class Tokenizer:
    """Turns text into stemmed terms; one instance per thread (the stemmer is not thread-safe)."""

    def __init__(self, language: str = "english") -> None:
        self._stemmer = Stemmer.Stemmer(language)
        self._stemmer.maxCacheSize = 50_000

    def words(self, text: str) -> list[str]:
        """Normalised surface words, unstemmed (for suggestions and match explanations).

        camelCase humps and letter/digit switches split words here too, so a query typed
        like a filename ("BeachDay2024") meets the filename's words.
        """
        if text.isascii():  # already NFKC; one regex splits words, humps and digits alike
            if "'" in text:
                text = _APOSTROPHE.sub("", text)
            return [w.lower() for w in _ASCII_WORD.findall(text)]
        return general_words(text)

    def stem(self, words: Iterable[str]) -> list[str]:
        return self._stemmer.stemWords(list(words))

    def terms(self, text: str) -> list[str]:
        """Index terms of free text, in order, repeats kept (they count as term frequency)."""
        return self.stem(self.words(text))

    def filename_words(self, filename: str) -> list[str]:
        """Words of a filename's last path part: separators, humps, digits, the extension."""
        return self.words(filename.replace("\\", "/").rsplit("/", 1)[-1])

    def filename_terms(self, filename: str) -> list[str]:
        return self.stem(self.filename_words(filename))


def joined_ascii_words(values: list[str], last_path_part: bool = False) -> list[str] | None:
    """The words of each of `values` as Tokenizer.words finds them, before lower-casing, each
    value's words followed by a "\\x00": one regex over the joined values instead of one call
    per value. `last_path_part`: of each value only what follows its last slash or backslash
    (Tokenizer.filename_words). None unless every value is ASCII without a NUL of its own."""
    joined = "\x00".join(values) + "\x00"
    if not joined.isascii() or joined.count("\x00") != len(values):
        return None
    if last_path_part and ("/" in joined or "\\" in joined):
        joined = _DIRECTORIES.sub("", joined.replace("\\", "/"))
    if "'" in joined:  # a NUL is not a word character: no apostrophe joins two values
        joined = _APOSTROPHE.sub("", joined)
    return _ASCII_WORD_OR_END.findall(joined)


def general_words(text: str) -> list[str]:
    """Tokenizer.words for any text (the ASCII shortcut gives the same words)."""
    nfkc = _APOSTROPHE.sub("", unicodedata.normalize("NFKC", text))
    return [part.casefold() for chunk in _WORD.findall(nfkc) for part in _split_humps(chunk)]


def _split_humps(word: str) -> list[str]:
    """Split one word at camelCase humps and letter/digit switches, in any script.

    "BeachDay2024" -> Beach, Day, 2024; "HTTPServer" -> HTTP, Server; "café" stays whole.
    """
    if word.isdigit() or (
        word.isalpha() and (word.islower() or word.isupper() or word[1:].islower())
    ):
        return [word]  # the common case: nothing to split (an all-capitals word has no hump)
    parts: list[str] = []
    start = 0
    for i in range(1, len(word)):
        prev, cur = word[i - 1], word[i]
        digit_switch = prev.isdigit() != cur.isdigit()
        hump = prev.islower() and cur.isupper()
        # The last capital of a run starts the next word: "HTTPServer" -> "HTTP" + "Server".
        acronym_end = (
            prev.isupper() and cur.isupper() and i + 1 < len(word) and word[i + 1].islower()
        )
        if digit_switch or hump or acronym_end:
            parts.append(word[start:i])
            start = i
    parts.append(word[start:])
    return parts
