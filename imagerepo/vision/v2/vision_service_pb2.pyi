from imagerepo.common.v2 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalysisTask(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANALYSIS_TASK_UNSPECIFIED: _ClassVar[AnalysisTask]
    ANALYSIS_TASK_LABELS: _ClassVar[AnalysisTask]
    ANALYSIS_TASK_FEATURES: _ClassVar[AnalysisTask]
    ANALYSIS_TASK_MODERATION: _ClassVar[AnalysisTask]
    ANALYSIS_TASK_OCR: _ClassVar[AnalysisTask]
    ANALYSIS_TASK_COLOURS: _ClassVar[AnalysisTask]

class OcrMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OCR_MODE_UNSPECIFIED: _ClassVar[OcrMode]
    OCR_MODE_AUTO: _ClassVar[OcrMode]
    OCR_MODE_ALWAYS: _ClassVar[OcrMode]
    OCR_MODE_NEVER: _ClassVar[OcrMode]

class ModelTask(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TASK_UNSPECIFIED: _ClassVar[ModelTask]
    MODEL_TASK_LABELS_AND_FEATURES: _ClassVar[ModelTask]
    MODEL_TASK_MODERATION: _ClassVar[ModelTask]
    MODEL_TASK_OCR_DETECTION: _ClassVar[ModelTask]
    MODEL_TASK_OCR_RECOGNITION: _ClassVar[ModelTask]
    MODEL_TASK_TEXT_EMBEDDING: _ClassVar[ModelTask]
ANALYSIS_TASK_UNSPECIFIED: AnalysisTask
ANALYSIS_TASK_LABELS: AnalysisTask
ANALYSIS_TASK_FEATURES: AnalysisTask
ANALYSIS_TASK_MODERATION: AnalysisTask
ANALYSIS_TASK_OCR: AnalysisTask
ANALYSIS_TASK_COLOURS: AnalysisTask
OCR_MODE_UNSPECIFIED: OcrMode
OCR_MODE_AUTO: OcrMode
OCR_MODE_ALWAYS: OcrMode
OCR_MODE_NEVER: OcrMode
MODEL_TASK_UNSPECIFIED: ModelTask
MODEL_TASK_LABELS_AND_FEATURES: ModelTask
MODEL_TASK_MODERATION: ModelTask
MODEL_TASK_OCR_DETECTION: ModelTask
MODEL_TASK_OCR_RECOGNITION: ModelTask
MODEL_TASK_TEXT_EMBEDDING: ModelTask

class AnalyzeRequest(_message.Message):
    __slots__ = ("image_data", "tasks", "top_k", "ocr_mode")
    IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    OCR_MODE_FIELD_NUMBER: _ClassVar[int]
    image_data: bytes
    tasks: _containers.RepeatedScalarFieldContainer[AnalysisTask]
    top_k: int
    ocr_mode: OcrMode
    def __init__(self, image_data: _Optional[bytes] = ..., tasks: _Optional[_Iterable[_Union[AnalysisTask, str]]] = ..., top_k: _Optional[int] = ..., ocr_mode: _Optional[_Union[OcrMode, str]] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("labels", "feature_vector", "moderation_score", "ocr_text", "text_boxes", "ocr_ran", "width", "height", "format", "model_versions", "colours")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    MODERATION_SCORE_FIELD_NUMBER: _ClassVar[int]
    OCR_TEXT_FIELD_NUMBER: _ClassVar[int]
    TEXT_BOXES_FIELD_NUMBER: _ClassVar[int]
    OCR_RAN_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COLOURS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Label]
    feature_vector: _containers.RepeatedScalarFieldContainer[float]
    moderation_score: float
    ocr_text: str
    text_boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.TextBox]
    ocr_ran: bool
    width: int
    height: int
    format: str
    model_versions: _containers.ScalarMap[str, str]
    colours: _containers.RepeatedCompositeFieldContainer[_common_pb2.ColourShare]
    def __init__(self, labels: _Optional[_Iterable[_Union[_common_pb2.Label, _Mapping]]] = ..., feature_vector: _Optional[_Iterable[float]] = ..., moderation_score: _Optional[float] = ..., ocr_text: _Optional[str] = ..., text_boxes: _Optional[_Iterable[_Union[_common_pb2.TextBox, _Mapping]]] = ..., ocr_ran: _Optional[bool] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[str] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., colours: _Optional[_Iterable[_Union[_common_pb2.ColourShare, _Mapping]]] = ...) -> None: ...

class EmbedTextRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedTextResponse(_message.Message):
    __slots__ = ("embeddings", "dimension", "model")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    dimension: int
    model: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., dimension: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "sha256", "license", "input_spec", "task", "loaded")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SPEC_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    license: str
    input_spec: str
    task: ModelTask
    loaded: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., license: _Optional[str] = ..., input_spec: _Optional[str] = ..., task: _Optional[_Union[ModelTask, str]] = ..., loaded: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ListLabelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLabelsResponse(_message.Message):
    __slots__ = ("labels", "model")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Label]
    model: str
    def __init__(self, labels: _Optional[_Iterable[_Union[_common_pb2.Label, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...
