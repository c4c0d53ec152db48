import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Colour(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOUR_UNSPECIFIED: _ClassVar[Colour]
    COLOUR_RED: _ClassVar[Colour]
    COLOUR_ORANGE: _ClassVar[Colour]
    COLOUR_YELLOW: _ClassVar[Colour]
    COLOUR_GREEN: _ClassVar[Colour]
    COLOUR_BLUE: _ClassVar[Colour]
    COLOUR_PURPLE: _ClassVar[Colour]
    COLOUR_PINK: _ClassVar[Colour]
    COLOUR_BROWN: _ClassVar[Colour]
    COLOUR_BLACK: _ClassVar[Colour]
    COLOUR_WHITE: _ClassVar[Colour]
    COLOUR_GREY: _ClassVar[Colour]

class AnalysisStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANALYSIS_STATUS_UNSPECIFIED: _ClassVar[AnalysisStatus]
    ANALYSIS_STATUS_PENDING: _ClassVar[AnalysisStatus]
    ANALYSIS_STATUS_READY: _ClassVar[AnalysisStatus]
    ANALYSIS_STATUS_FAILED: _ClassVar[AnalysisStatus]
COLOUR_UNSPECIFIED: Colour
COLOUR_RED: Colour
COLOUR_ORANGE: Colour
COLOUR_YELLOW: Colour
COLOUR_GREEN: Colour
COLOUR_BLUE: Colour
COLOUR_PURPLE: Colour
COLOUR_PINK: Colour
COLOUR_BROWN: Colour
COLOUR_BLACK: Colour
COLOUR_WHITE: Colour
COLOUR_GREY: Colour
ANALYSIS_STATUS_UNSPECIFIED: AnalysisStatus
ANALYSIS_STATUS_PENDING: AnalysisStatus
ANALYSIS_STATUS_READY: AnalysisStatus
ANALYSIS_STATUS_FAILED: AnalysisStatus

class Label(_message.Message):
    __slots__ = ("name", "probability", "synonyms", "class_index")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SYNONYMS_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    name: str
    probability: float
    synonyms: _containers.RepeatedScalarFieldContainer[str]
    class_index: int
    def __init__(self, name: _Optional[str] = ..., probability: _Optional[float] = ..., synonyms: _Optional[_Iterable[str]] = ..., class_index: _Optional[int] = ...) -> None: ...

class ColourShare(_message.Message):
    __slots__ = ("colour", "share")
    COLOUR_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    colour: Colour
    share: float
    def __init__(self, colour: _Optional[_Union[Colour, str]] = ..., share: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class TextBox(_message.Message):
    __slots__ = ("text", "confidence", "box")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    text: str
    confidence: float
    box: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, text: _Optional[str] = ..., confidence: _Optional[float] = ..., box: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class LabelFeedback(_message.Message):
    __slots__ = ("label", "comment", "reported_by", "create_time")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    REPORTED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    label: str
    comment: str
    reported_by: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, label: _Optional[str] = ..., comment: _Optional[str] = ..., reported_by: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
