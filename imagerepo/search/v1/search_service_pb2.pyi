from imagerepo.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SortOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SORT_ORDER_UNSPECIFIED: _ClassVar[SortOrder]
    SORT_ORDER_RELEVANCE: _ClassVar[SortOrder]
    SORT_ORDER_TAKEN_NEWEST: _ClassVar[SortOrder]
    SORT_ORDER_TAKEN_OLDEST: _ClassVar[SortOrder]
SORT_ORDER_UNSPECIFIED: SortOrder
SORT_ORDER_RELEVANCE: SortOrder
SORT_ORDER_TAKEN_NEWEST: SortOrder
SORT_ORDER_TAKEN_OLDEST: SortOrder

class SearchDocument(_message.Message):
    __slots__ = ("image_id", "filename", "owner", "labels", "tags", "ocr_text", "moderation_score", "status", "feature_vector", "sha256", "created_at_unix_ms", "exif")
    class ExifEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    OCR_TEXT_FIELD_NUMBER: _ClassVar[int]
    MODERATION_SCORE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EXIF_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    filename: str
    owner: str
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Label]
    tags: _containers.RepeatedScalarFieldContainer[str]
    ocr_text: str
    moderation_score: float
    status: _common_pb2.AnalysisStatus
    feature_vector: _containers.RepeatedScalarFieldContainer[float]
    sha256: str
    created_at_unix_ms: int
    exif: _containers.ScalarMap[str, str]
    def __init__(self, image_id: _Optional[str] = ..., filename: _Optional[str] = ..., owner: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[_common_pb2.Label, _Mapping]]] = ..., tags: _Optional[_Iterable[str]] = ..., ocr_text: _Optional[str] = ..., moderation_score: _Optional[float] = ..., status: _Optional[_Union[_common_pb2.AnalysisStatus, str]] = ..., feature_vector: _Optional[_Iterable[float]] = ..., sha256: _Optional[str] = ..., created_at_unix_ms: _Optional[int] = ..., exif: _Optional[_Mapping[str, str]] = ...) -> None: ...

class IndexImageRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: SearchDocument
    def __init__(self, document: _Optional[_Union[SearchDocument, _Mapping]] = ...) -> None: ...

class IndexImageResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveImageRequest(_message.Message):
    __slots__ = ("image_id",)
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    def __init__(self, image_id: _Optional[str] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class SearchFilters(_message.Message):
    __slots__ = ("owner", "include_moderated", "statuses", "taken_from_unix_s", "taken_until_unix_s", "favourites_only", "allowed_ids")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MODERATED_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TAKEN_FROM_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    TAKEN_UNTIL_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    FAVOURITES_ONLY_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_IDS_FIELD_NUMBER: _ClassVar[int]
    owner: str
    include_moderated: bool
    statuses: _containers.RepeatedScalarFieldContainer[_common_pb2.AnalysisStatus]
    taken_from_unix_s: int
    taken_until_unix_s: int
    favourites_only: bool
    allowed_ids: ImageIdAllowList
    def __init__(self, owner: _Optional[str] = ..., include_moderated: _Optional[bool] = ..., statuses: _Optional[_Iterable[_Union[_common_pb2.AnalysisStatus, str]]] = ..., taken_from_unix_s: _Optional[int] = ..., taken_until_unix_s: _Optional[int] = ..., favourites_only: _Optional[bool] = ..., allowed_ids: _Optional[_Union[ImageIdAllowList, _Mapping]] = ...) -> None: ...

class ImageIdAllowList(_message.Message):
    __slots__ = ("image_ids",)
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "filters", "page_size", "page_token", "disable_semantic", "sort")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DISABLE_SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    query: str
    filters: SearchFilters
    page_size: int
    page_token: str
    disable_semantic: bool
    sort: SortOrder
    def __init__(self, query: _Optional[str] = ..., filters: _Optional[_Union[SearchFilters, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., disable_semantic: _Optional[bool] = ..., sort: _Optional[_Union[SortOrder, str]] = ...) -> None: ...

class MatchReason(_message.Message):
    __slots__ = ("field", "term", "score")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    field: str
    term: str
    score: float
    def __init__(self, field: _Optional[str] = ..., term: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("image_id", "score", "reasons")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    score: float
    reasons: _containers.RepeatedCompositeFieldContainer[MatchReason]
    def __init__(self, image_id: _Optional[str] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[_Union[MatchReason, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "next_page_token", "total_hits", "fell_back_to_or", "closest", "note")
    HITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_HITS_FIELD_NUMBER: _ClassVar[int]
    FELL_BACK_TO_OR_FIELD_NUMBER: _ClassVar[int]
    CLOSEST_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    next_page_token: str
    total_hits: int
    fell_back_to_or: bool
    closest: _containers.RepeatedScalarFieldContainer[str]
    note: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_hits: _Optional[int] = ..., fell_back_to_or: _Optional[bool] = ..., closest: _Optional[_Iterable[str]] = ..., note: _Optional[str] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SimilarImagesRequest(_message.Message):
    __slots__ = ("image_id", "vector", "k", "filters", "exact")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    vector: FeatureVector
    k: int
    filters: SearchFilters
    exact: bool
    def __init__(self, image_id: _Optional[str] = ..., vector: _Optional[_Union[FeatureVector, _Mapping]] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[SearchFilters, _Mapping]] = ..., exact: _Optional[bool] = ...) -> None: ...

class SimilarHit(_message.Message):
    __slots__ = ("image_id", "similarity")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    similarity: float
    def __init__(self, image_id: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...

class SimilarImagesResponse(_message.Message):
    __slots__ = ("hits", "approximate")
    HITS_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SimilarHit]
    approximate: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[SimilarHit, _Mapping]]] = ..., approximate: _Optional[bool] = ...) -> None: ...

class FindDuplicatesRequest(_message.Message):
    __slots__ = ("near_threshold", "image_id")
    NEAR_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    near_threshold: float
    image_id: str
    def __init__(self, near_threshold: _Optional[float] = ..., image_id: _Optional[str] = ...) -> None: ...

class DuplicateGroup(_message.Message):
    __slots__ = ("image_ids", "sha256", "min_similarity")
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    sha256: str
    min_similarity: float
    def __init__(self, image_ids: _Optional[_Iterable[str]] = ..., sha256: _Optional[str] = ..., min_similarity: _Optional[float] = ...) -> None: ...

class FindDuplicatesResponse(_message.Message):
    __slots__ = ("exact_groups", "near_groups")
    EXACT_GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEAR_GROUPS_FIELD_NUMBER: _ClassVar[int]
    exact_groups: _containers.RepeatedCompositeFieldContainer[DuplicateGroup]
    near_groups: _containers.RepeatedCompositeFieldContainer[DuplicateGroup]
    def __init__(self, exact_groups: _Optional[_Iterable[_Union[DuplicateGroup, _Mapping]]] = ..., near_groups: _Optional[_Iterable[_Union[DuplicateGroup, _Mapping]]] = ...) -> None: ...

class SuggestRequest(_message.Message):
    __slots__ = ("prefix", "limit")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Suggestion(_message.Message):
    __slots__ = ("text", "document_count", "field")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    text: str
    document_count: int
    field: str
    def __init__(self, text: _Optional[str] = ..., document_count: _Optional[int] = ..., field: _Optional[str] = ...) -> None: ...

class SuggestResponse(_message.Message):
    __slots__ = ("suggestions",)
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    suggestions: _containers.RepeatedCompositeFieldContainer[Suggestion]
    def __init__(self, suggestions: _Optional[_Iterable[_Union[Suggestion, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("document_count", "term_count", "posting_bytes", "index_disk_bytes", "vector_count", "approximate_index", "vector_backend", "load_time_s", "applied_seq", "head_seq", "lag_seqs", "replaying", "replay_progress", "following", "feed_error", "feed_damaged_changes", "last_damaged_change", "snapshot_failures", "last_snapshot_error", "compactions", "compaction_failures", "last_compaction_error", "compactions_postponed", "last_compaction_postponed")
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TERM_COUNT_FIELD_NUMBER: _ClassVar[int]
    POSTING_BYTES_FIELD_NUMBER: _ClassVar[int]
    INDEX_DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    VECTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_INDEX_FIELD_NUMBER: _ClassVar[int]
    VECTOR_BACKEND_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_S_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAG_SEQS_FIELD_NUMBER: _ClassVar[int]
    REPLAYING_FIELD_NUMBER: _ClassVar[int]
    REPLAY_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FOLLOWING_FIELD_NUMBER: _ClassVar[int]
    FEED_ERROR_FIELD_NUMBER: _ClassVar[int]
    FEED_DAMAGED_CHANGES_FIELD_NUMBER: _ClassVar[int]
    LAST_DAMAGED_CHANGE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPACTIONS_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_COMPACTION_ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPACTIONS_POSTPONED_FIELD_NUMBER: _ClassVar[int]
    LAST_COMPACTION_POSTPONED_FIELD_NUMBER: _ClassVar[int]
    document_count: int
    term_count: int
    posting_bytes: int
    index_disk_bytes: int
    vector_count: int
    approximate_index: bool
    vector_backend: str
    load_time_s: float
    applied_seq: int
    head_seq: int
    lag_seqs: int
    replaying: bool
    replay_progress: float
    following: bool
    feed_error: str
    feed_damaged_changes: int
    last_damaged_change: str
    snapshot_failures: int
    last_snapshot_error: str
    compactions: int
    compaction_failures: int
    last_compaction_error: str
    compactions_postponed: int
    last_compaction_postponed: str
    def __init__(self, document_count: _Optional[int] = ..., term_count: _Optional[int] = ..., posting_bytes: _Optional[int] = ..., index_disk_bytes: _Optional[int] = ..., vector_count: _Optional[int] = ..., approximate_index: _Optional[bool] = ..., vector_backend: _Optional[str] = ..., load_time_s: _Optional[float] = ..., applied_seq: _Optional[int] = ..., head_seq: _Optional[int] = ..., lag_seqs: _Optional[int] = ..., replaying: _Optional[bool] = ..., replay_progress: _Optional[float] = ..., following: _Optional[bool] = ..., feed_error: _Optional[str] = ..., feed_damaged_changes: _Optional[int] = ..., last_damaged_change: _Optional[str] = ..., snapshot_failures: _Optional[int] = ..., last_snapshot_error: _Optional[str] = ..., compactions: _Optional[int] = ..., compaction_failures: _Optional[int] = ..., last_compaction_error: _Optional[str] = ..., compactions_postponed: _Optional[int] = ..., last_compaction_postponed: _Optional[str] = ...) -> None: ...

class RebuildRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: SearchDocument
    def __init__(self, document: _Optional[_Union[SearchDocument, _Mapping]] = ...) -> None: ...

class RebuildResponse(_message.Message):
    __slots__ = ("indexed_count", "elapsed_s", "skipped_count", "skipped")
    INDEXED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    indexed_count: int
    elapsed_s: float
    skipped_count: int
    skipped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, indexed_count: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., skipped_count: _Optional[int] = ..., skipped: _Optional[_Iterable[str]] = ...) -> None: ...
