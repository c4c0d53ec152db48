"""Translations every v2 servicer shares (imagerepo.common.v2): colour words and the Colour
enum, v1 labels/colours/feedback as v2 messages, milliseconds since the epoch and Timestamps.

The v2 servicers answer from the same domain calls as v1; these keep the two contracts saying
the same thing in their own terms. No domain logic here, and no gRPC."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from imagerepo.common.v1 import common_pb2 as common_v1
from imagerepo.common.v2 import common_pb2 as common_v2

# The 11 basic colour words, in the order of the Colour enum's values 1..11.
COLOUR_WORDS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "grey",
)
_COLOUR_OF_WORD = {word: common_v2.Colour.Value(f"COLOUR_{word.upper()}") for word in COLOUR_WORDS}
_WORD_OF_COLOUR = {value: word for word, value in _COLOUR_OF_WORD.items()}
# The Colour values that name a colour (not COLOUR_UNSPECIFIED).
KNOWN_COLOURS = frozenset(_WORD_OF_COLOUR)


def colour_of_word(word: str) -> common_v2.Colour:
    """COLOUR_UNSPECIFIED for a word that is not one of the 11 (never raises on old data)."""
    return _COLOUR_OF_WORD.get(word.strip().lower(), common_v2.COLOUR_UNSPECIFIED)


def word_of_colour(colour: int) -> str:
    """ValueError for COLOUR_UNSPECIFIED or an unknown value."""
    try:
        return _WORD_OF_COLOUR[colour]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown colour {colour}") from None


def colour_name(colour: int) -> str:
    """The colour's word; "" for COLOUR_UNSPECIFIED or a value this build does not know."""
    return _WORD_OF_COLOUR.get(colour, "")  # type: ignore[call-overload]


def colours_to_v2(shares: Iterable[common_v1.ColourShare]) -> list[common_v2.ColourShare]:
    return [common_v2.ColourShare(colour=colour_of_word(s.name), share=s.share) for s in shares]


def colours_to_v1(shares: Iterable[common_v2.ColourShare]) -> list[common_v1.ColourShare]:
    """ValueError when a share names no colour."""
    return [common_v1.ColourShare(name=word_of_colour(s.colour), share=s.share) for s in shares]


def label_to_v2(label: common_v1.Label) -> common_v2.Label:
    """v1 writes -1 for an unknown class index; v2 leaves it unset (0 is a real class)."""
    out = common_v2.Label(
        name=label.name, probability=label.probability, synonyms=list(label.synonyms)
    )
    if label.class_index >= 0:
        out.class_index = label.class_index
    return out


def label_to_v1(label: common_v2.Label) -> common_v1.Label:
    return common_v1.Label(
        name=label.name,
        probability=label.probability,
        synonyms=list(label.synonyms),
        class_index=label.class_index if label.HasField("class_index") else -1,
    )


def timestamp_of_ms(unix_ms: int) -> Timestamp | None:
    """None for 0, which v1 uses for "never" / "unknown"."""
    if not unix_ms:
        return None
    stamp = Timestamp()
    stamp.FromMilliseconds(unix_ms)
    return stamp


def ms_of_timestamp(stamp: Timestamp) -> int:
    return stamp.ToMilliseconds()


def feedback_to_v2(item: common_v1.LabelFeedback) -> common_v2.LabelFeedback:
    return common_v2.LabelFeedback(
        label=item.label,
        comment=item.comment,
        reported_by=item.reported_by,
        create_time=timestamp_of_ms(item.created_at_unix_ms),
    )


def feedback_to_v1(item: common_v2.LabelFeedback) -> common_v1.LabelFeedback:
    return common_v1.LabelFeedback(
        label=item.label,
        comment=item.comment,
        reported_by=item.reported_by,
        created_at_unix_ms=item.create_time.ToMilliseconds() if item.HasField("create_time") else 0,
    )
