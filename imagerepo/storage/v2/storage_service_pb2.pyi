import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from imagerepo.common.v2 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ThumbnailState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THUMBNAIL_STATE_UNSPECIFIED: _ClassVar[ThumbnailState]
    THUMBNAIL_STATE_READY: _ClassVar[ThumbnailState]
    THUMBNAIL_STATE_PENDING: _ClassVar[ThumbnailState]
    THUMBNAIL_STATE_FAILED: _ClassVar[ThumbnailState]

class ThumbnailSize(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THUMBNAIL_SIZE_UNSPECIFIED: _ClassVar[ThumbnailSize]
    THUMBNAIL_SIZE_SMALL: _ClassVar[ThumbnailSize]
    THUMBNAIL_SIZE_PREVIEW: _ClassVar[ThumbnailSize]

class ListOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIST_ORDER_UNSPECIFIED: _ClassVar[ListOrder]
    LIST_ORDER_UPLOADED_NEWEST: _ClassVar[ListOrder]
    LIST_ORDER_TAKEN_NEWEST: _ClassVar[ListOrder]
    LIST_ORDER_TAKEN_OLDEST: _ClassVar[ListOrder]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_PUT: _ClassVar[ChangeKind]
    CHANGE_KIND_ANNOTATE: _ClassVar[ChangeKind]
    CHANGE_KIND_DELETE: _ClassVar[ChangeKind]
THUMBNAIL_STATE_UNSPECIFIED: ThumbnailState
THUMBNAIL_STATE_READY: ThumbnailState
THUMBNAIL_STATE_PENDING: ThumbnailState
THUMBNAIL_STATE_FAILED: ThumbnailState
THUMBNAIL_SIZE_UNSPECIFIED: ThumbnailSize
THUMBNAIL_SIZE_SMALL: ThumbnailSize
THUMBNAIL_SIZE_PREVIEW: ThumbnailSize
LIST_ORDER_UNSPECIFIED: ListOrder
LIST_ORDER_UPLOADED_NEWEST: ListOrder
LIST_ORDER_TAKEN_NEWEST: ListOrder
LIST_ORDER_TAKEN_OLDEST: ListOrder
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_PUT: ChangeKind
CHANGE_KIND_ANNOTATE: ChangeKind
CHANGE_KIND_DELETE: ChangeKind

class PutImageHeader(_message.Message):
    __slots__ = ("filename", "content_type", "owner", "expected_size", "keep_duplicate", "tags")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    KEEP_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content_type: str
    owner: str
    expected_size: int
    keep_duplicate: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filename: _Optional[str] = ..., content_type: _Optional[str] = ..., owner: _Optional[str] = ..., expected_size: _Optional[int] = ..., keep_duplicate: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class PutImageRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PutImageHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[PutImageHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class PutImageResponse(_message.Message):
    __slots__ = ("image", "duplicate_of", "already_stored")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    ALREADY_STORED_FIELD_NUMBER: _ClassVar[int]
    image: ImageMetadata
    duplicate_of: _containers.RepeatedScalarFieldContainer[str]
    already_stored: bool
    def __init__(self, image: _Optional[_Union[ImageMetadata, _Mapping]] = ..., duplicate_of: _Optional[_Iterable[str]] = ..., already_stored: _Optional[bool] = ...) -> None: ...

class ImageMetadata(_message.Message):
    __slots__ = ("id", "filename", "owner", "content_type", "create_time", "sha256", "byte_size", "width", "height", "exif", "labels", "moderation_score", "ocr_text", "tags", "status", "feature_vector", "has_feature_vector", "feedback", "status_detail", "format", "analysis", "colours", "favourite", "trash_time", "taken_time", "taken_time_is_upload_time", "thumbnail_state", "thumbnail_detail")
    class ExifEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    EXIF_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODERATION_SCORE_FIELD_NUMBER: _ClassVar[int]
    OCR_TEXT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    HAS_FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    COLOURS_FIELD_NUMBER: _ClassVar[int]
    FAVOURITE_FIELD_NUMBER: _ClassVar[int]
    TRASH_TIME_FIELD_NUMBER: _ClassVar[int]
    TAKEN_TIME_FIELD_NUMBER: _ClassVar[int]
    TAKEN_TIME_IS_UPLOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_STATE_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    filename: str
    owner: str
    content_type: str
    create_time: _timestamp_pb2.Timestamp
    sha256: str
    byte_size: int
    width: int
    height: int
    exif: _containers.ScalarMap[str, str]
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Label]
    moderation_score: float
    ocr_text: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    status: _common_pb2.AnalysisStatus
    feature_vector: _containers.RepeatedScalarFieldContainer[float]
    has_feature_vector: bool
    feedback: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelFeedback]
    status_detail: str
    format: str
    analysis: AnalysisState
    colours: _containers.RepeatedCompositeFieldContainer[_common_pb2.ColourShare]
    favourite: bool
    trash_time: _timestamp_pb2.Timestamp
    taken_time: _timestamp_pb2.Timestamp
    taken_time_is_upload_time: bool
    thumbnail_state: ThumbnailState
    thumbnail_detail: str
    def __init__(self, id: _Optional[str] = ..., filename: _Optional[str] = ..., owner: _Optional[str] = ..., content_type: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sha256: _Optional[str] = ..., byte_size: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., exif: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Iterable[_Union[_common_pb2.Label, _Mapping]]] = ..., moderation_score: _Optional[float] = ..., ocr_text: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[_common_pb2.AnalysisStatus, str]] = ..., feature_vector: _Optional[_Iterable[float]] = ..., has_feature_vector: _Optional[bool] = ..., feedback: _Optional[_Iterable[_Union[_common_pb2.LabelFeedback, _Mapping]]] = ..., status_detail: _Optional[str] = ..., format: _Optional[str] = ..., analysis: _Optional[_Union[AnalysisState, _Mapping]] = ..., colours: _Optional[_Iterable[_Union[_common_pb2.ColourShare, _Mapping]]] = ..., favourite: _Optional[bool] = ..., trash_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., taken_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., taken_time_is_upload_time: _Optional[bool] = ..., thumbnail_state: _Optional[_Union[ThumbnailState, str]] = ..., thumbnail_detail: _Optional[str] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("image_id", "include_data", "include_feature_vector")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    include_data: bool
    include_feature_vector: bool
    def __init__(self, image_id: _Optional[str] = ..., include_data: _Optional[bool] = ..., include_feature_vector: _Optional[bool] = ...) -> None: ...

class GetImageResponse(_message.Message):
    __slots__ = ("image", "data")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    image: ImageMetadata
    data: bytes
    def __init__(self, image: _Optional[_Union[ImageMetadata, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class BatchGetImagesRequest(_message.Message):
    __slots__ = ("image_ids", "include_feature_vectors")
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FEATURE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    include_feature_vectors: bool
    def __init__(self, image_ids: _Optional[_Iterable[str]] = ..., include_feature_vectors: _Optional[bool] = ...) -> None: ...

class BatchGetImagesResponse(_message.Message):
    __slots__ = ("images", "not_found_ids", "unreadable_ids", "not_returned_ids")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_IDS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_IDS_FIELD_NUMBER: _ClassVar[int]
    NOT_RETURNED_IDS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageMetadata]
    not_found_ids: _containers.RepeatedScalarFieldContainer[str]
    unreadable_ids: _containers.RepeatedScalarFieldContainer[str]
    not_returned_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, images: _Optional[_Iterable[_Union[ImageMetadata, _Mapping]]] = ..., not_found_ids: _Optional[_Iterable[str]] = ..., unreadable_ids: _Optional[_Iterable[str]] = ..., not_returned_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReadImageDataRequest(_message.Message):
    __slots__ = ("image_id", "chunk_size")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    chunk_size: int
    def __init__(self, image_id: _Optional[str] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class ReadImageDataResponse(_message.Message):
    __slots__ = ("chunk", "offset", "total_size", "content_type")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    offset: int
    total_size: int
    content_type: str
    def __init__(self, chunk: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class GetThumbnailRequest(_message.Message):
    __slots__ = ("image_id", "size")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    size: ThumbnailSize
    def __init__(self, image_id: _Optional[str] = ..., size: _Optional[_Union[ThumbnailSize, str]] = ...) -> None: ...

class GetThumbnailResponse(_message.Message):
    __slots__ = ("data", "content_type", "width", "height")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    width: int
    height: int
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class FindByFilenameRequest(_message.Message):
    __slots__ = ("filename", "page_size", "page_token")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filename: str
    page_size: int
    page_token: str
    def __init__(self, filename: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FindByFilenameResponse(_message.Message):
    __slots__ = ("images", "next_page_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageMetadata]
    next_page_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[ImageMetadata, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FindBySha256Request(_message.Message):
    __slots__ = ("sha256", "owner")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    def __init__(self, sha256: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ...) -> None: ...

class Sha256Match(_message.Message):
    __slots__ = ("sha256", "images", "image_ids")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    images: _containers.RepeatedCompositeFieldContainer[ImageMetadata]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha256: _Optional[str] = ..., images: _Optional[_Iterable[_Union[ImageMetadata, _Mapping]]] = ..., image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FindBySha256Response(_message.Message):
    __slots__ = ("matches", "truncated")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[Sha256Match]
    truncated: bool
    def __init__(self, matches: _Optional[_Iterable[_Union[Sha256Match, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "owner", "include_feature_vectors", "status", "favourite_only", "trashed_only", "order", "taken_from", "taken_until")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FEATURE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAVOURITE_ONLY_FIELD_NUMBER: _ClassVar[int]
    TRASHED_ONLY_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    TAKEN_FROM_FIELD_NUMBER: _ClassVar[int]
    TAKEN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    owner: str
    include_feature_vectors: bool
    status: _common_pb2.AnalysisStatus
    favourite_only: bool
    trashed_only: bool
    order: ListOrder
    taken_from: _timestamp_pb2.Timestamp
    taken_until: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., owner: _Optional[str] = ..., include_feature_vectors: _Optional[bool] = ..., status: _Optional[_Union[_common_pb2.AnalysisStatus, str]] = ..., favourite_only: _Optional[bool] = ..., trashed_only: _Optional[bool] = ..., order: _Optional[_Union[ListOrder, str]] = ..., taken_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., taken_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token", "total_count", "unreadable_count", "snapshot_seq")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SEQ_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageMetadata]
    next_page_token: str
    total_count: int
    unreadable_count: int
    snapshot_seq: int
    def __init__(self, images: _Optional[_Iterable[_Union[ImageMetadata, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_count: _Optional[int] = ..., unreadable_count: _Optional[int] = ..., snapshot_seq: _Optional[int] = ...) -> None: ...

class Annotations(_message.Message):
    __slots__ = ("labels", "feature_vector", "moderation_score", "ocr_text", "tags", "status", "status_detail", "favourite", "trashed")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    MODERATION_SCORE_FIELD_NUMBER: _ClassVar[int]
    OCR_TEXT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    FAVOURITE_FIELD_NUMBER: _ClassVar[int]
    TRASHED_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Label]
    feature_vector: _containers.RepeatedScalarFieldContainer[float]
    moderation_score: float
    ocr_text: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    status: _common_pb2.AnalysisStatus
    status_detail: str
    favourite: bool
    trashed: bool
    def __init__(self, labels: _Optional[_Iterable[_Union[_common_pb2.Label, _Mapping]]] = ..., feature_vector: _Optional[_Iterable[float]] = ..., moderation_score: _Optional[float] = ..., ocr_text: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[_common_pb2.AnalysisStatus, str]] = ..., status_detail: _Optional[str] = ..., favourite: _Optional[bool] = ..., trashed: _Optional[bool] = ...) -> None: ...

class UpdateAnnotationsRequest(_message.Message):
    __slots__ = ("image_id", "annotations", "update_mask", "add_tags", "remove_tags", "add_feedback")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ADD_TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    ADD_FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    annotations: Annotations
    update_mask: _field_mask_pb2.FieldMask
    add_tags: _containers.RepeatedScalarFieldContainer[str]
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    add_feedback: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelFeedback]
    def __init__(self, image_id: _Optional[str] = ..., annotations: _Optional[_Union[Annotations, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., add_tags: _Optional[_Iterable[str]] = ..., remove_tags: _Optional[_Iterable[str]] = ..., add_feedback: _Optional[_Iterable[_Union[_common_pb2.LabelFeedback, _Mapping]]] = ...) -> None: ...

class UpdateAnnotationsResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: ImageMetadata
    def __init__(self, image: _Optional[_Union[ImageMetadata, _Mapping]] = ...) -> None: ...

class DeleteImageRequest(_message.Message):
    __slots__ = ("image_id",)
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    def __init__(self, image_id: _Optional[str] = ...) -> None: ...

class DeleteImageResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: ImageMetadata
    def __init__(self, image: _Optional[_Union[ImageMetadata, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ColumnStats(_message.Message):
    __slots__ = ("name", "raw_bytes", "stored_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    raw_bytes: int
    stored_bytes: int
    def __init__(self, name: _Optional[str] = ..., raw_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("image_count", "deleted_count", "segment_count", "disk_bytes", "raw_image_bytes", "wal_bytes", "memtable_rows", "columns", "unreadable_count", "background_error", "last_verify", "storage_full", "quarantined_files", "damaged_log_records", "head_seq", "horizon_seq", "pending_count", "oldest_pending_age", "album_count", "feed_damaged_changes")
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    RAW_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMTABLE_ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFY_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FULL_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FILES_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_LOG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    HORIZON_SEQ_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_FIELD_NUMBER: _ClassVar[int]
    ALBUM_COUNT_FIELD_NUMBER: _ClassVar[int]
    FEED_DAMAGED_CHANGES_FIELD_NUMBER: _ClassVar[int]
    image_count: int
    deleted_count: int
    segment_count: int
    disk_bytes: int
    raw_image_bytes: int
    wal_bytes: int
    memtable_rows: int
    columns: _containers.RepeatedCompositeFieldContainer[ColumnStats]
    unreadable_count: int
    background_error: str
    last_verify: VerifyReport
    storage_full: bool
    quarantined_files: int
    damaged_log_records: int
    head_seq: int
    horizon_seq: int
    pending_count: int
    oldest_pending_age: _duration_pb2.Duration
    album_count: int
    feed_damaged_changes: int
    def __init__(self, image_count: _Optional[int] = ..., deleted_count: _Optional[int] = ..., segment_count: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., raw_image_bytes: _Optional[int] = ..., wal_bytes: _Optional[int] = ..., memtable_rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ColumnStats, _Mapping]]] = ..., unreadable_count: _Optional[int] = ..., background_error: _Optional[str] = ..., last_verify: _Optional[_Union[VerifyReport, _Mapping]] = ..., storage_full: _Optional[bool] = ..., quarantined_files: _Optional[int] = ..., damaged_log_records: _Optional[int] = ..., head_seq: _Optional[int] = ..., horizon_seq: _Optional[int] = ..., pending_count: _Optional[int] = ..., oldest_pending_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., album_count: _Optional[int] = ..., feed_damaged_changes: _Optional[int] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("segments_before", "segments_after", "bytes_before", "bytes_after", "rows_dropped")
    SEGMENTS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_AFTER_FIELD_NUMBER: _ClassVar[int]
    BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    ROWS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    segments_before: int
    segments_after: int
    bytes_before: int
    bytes_after: int
    rows_dropped: int
    def __init__(self, segments_before: _Optional[int] = ..., segments_after: _Optional[int] = ..., bytes_before: _Optional[int] = ..., bytes_after: _Optional[int] = ..., rows_dropped: _Optional[int] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyProgress(_message.Message):
    __slots__ = ("files_checked", "files_total", "bytes_checked", "bytes_total")
    FILES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    files_checked: int
    files_total: int
    bytes_checked: int
    bytes_total: int
    def __init__(self, files_checked: _Optional[int] = ..., files_total: _Optional[int] = ..., bytes_checked: _Optional[int] = ..., bytes_total: _Optional[int] = ...) -> None: ...

class DamagedItem(_message.Message):
    __slots__ = ("path", "detail", "image_ids")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    path: str
    detail: str
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., detail: _Optional[str] = ..., image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyReport(_message.Message):
    __slots__ = ("files_checked", "blocks_checked", "bytes_checked", "damaged", "finish_time", "ok", "damaged_image_ids")
    FILES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    BYTES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    files_checked: int
    blocks_checked: int
    bytes_checked: int
    damaged: _containers.RepeatedCompositeFieldContainer[DamagedItem]
    finish_time: _timestamp_pb2.Timestamp
    ok: bool
    damaged_image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, files_checked: _Optional[int] = ..., blocks_checked: _Optional[int] = ..., bytes_checked: _Optional[int] = ..., damaged: _Optional[_Iterable[_Union[DamagedItem, _Mapping]]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ok: _Optional[bool] = ..., damaged_image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("progress", "report")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    progress: VerifyProgress
    report: VerifyReport
    def __init__(self, progress: _Optional[_Union[VerifyProgress, _Mapping]] = ..., report: _Optional[_Union[VerifyReport, _Mapping]] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("seq", "kind", "image_id", "image", "damage")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DAMAGE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: ChangeKind
    image_id: str
    image: ImageMetadata
    damage: ChangeDamage
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., image_id: _Optional[str] = ..., image: _Optional[_Union[ImageMetadata, _Mapping]] = ..., damage: _Optional[_Union[ChangeDamage, _Mapping]] = ...) -> None: ...

class ChangeDamage(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class WatchChangesRequest(_message.Message):
    __slots__ = ("after_seq", "follow", "include_feature_vector", "max_batch", "max_backlog_batch")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKLOG_BATCH_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    follow: bool
    include_feature_vector: bool
    max_batch: int
    max_backlog_batch: int
    def __init__(self, after_seq: _Optional[int] = ..., follow: _Optional[bool] = ..., include_feature_vector: _Optional[bool] = ..., max_batch: _Optional[int] = ..., max_backlog_batch: _Optional[int] = ...) -> None: ...

class WatchChangesResponse(_message.Message):
    __slots__ = ("changes", "head_seq", "horizon_seq", "more")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    HORIZON_SEQ_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    head_seq: int
    horizon_seq: int
    more: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., head_seq: _Optional[int] = ..., horizon_seq: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class AnalysisState(_message.Message):
    __slots__ = ("attempts", "last_error", "generation", "lease_owner", "lease_expire_time", "next_attempt_time")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LEASE_OWNER_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    last_error: str
    generation: int
    lease_owner: str
    lease_expire_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    def __init__(self, attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., generation: _Optional[int] = ..., lease_owner: _Optional[str] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ClaimAnalysisRequest(_message.Message):
    __slots__ = ("worker_id", "max_images", "lease", "include_feature_vector")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    max_images: int
    lease: _duration_pb2.Duration
    include_feature_vector: bool
    def __init__(self, worker_id: _Optional[str] = ..., max_images: _Optional[int] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., include_feature_vector: _Optional[bool] = ...) -> None: ...

class ClaimedImage(_message.Message):
    __slots__ = ("image", "generation")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    image: ImageMetadata
    generation: int
    def __init__(self, image: _Optional[_Union[ImageMetadata, _Mapping]] = ..., generation: _Optional[int] = ...) -> None: ...

class ClaimAnalysisResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ClaimedImage]
    def __init__(self, images: _Optional[_Iterable[_Union[ClaimedImage, _Mapping]]] = ...) -> None: ...

class CompleteAnalysisRequest(_message.Message):
    __slots__ = ("image_id", "generation", "result", "failure")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    generation: int
    result: AnalysisResult
    failure: AnalysisFailure
    def __init__(self, image_id: _Optional[str] = ..., generation: _Optional[int] = ..., result: _Optional[_Union[AnalysisResult, _Mapping]] = ..., failure: _Optional[_Union[AnalysisFailure, _Mapping]] = ...) -> None: ...

class AnalysisResult(_message.Message):
    __slots__ = ("labels", "moderation_score", "ocr_text", "feature_vector", "colours")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODERATION_SCORE_FIELD_NUMBER: _ClassVar[int]
    OCR_TEXT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    COLOURS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[_common_pb2.Label]
    moderation_score: float
    ocr_text: str
    feature_vector: _containers.RepeatedScalarFieldContainer[float]
    colours: _containers.RepeatedCompositeFieldContainer[_common_pb2.ColourShare]
    def __init__(self, labels: _Optional[_Iterable[_Union[_common_pb2.Label, _Mapping]]] = ..., moderation_score: _Optional[float] = ..., ocr_text: _Optional[str] = ..., feature_vector: _Optional[_Iterable[float]] = ..., colours: _Optional[_Iterable[_Union[_common_pb2.ColourShare, _Mapping]]] = ...) -> None: ...

class AnalysisFailure(_message.Message):
    __slots__ = ("reason", "permanent", "outage")
    REASON_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    OUTAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    permanent: bool
    outage: bool
    def __init__(self, reason: _Optional[str] = ..., permanent: _Optional[bool] = ..., outage: _Optional[bool] = ...) -> None: ...

class CompleteAnalysisResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: ImageMetadata
    def __init__(self, image: _Optional[_Union[ImageMetadata, _Mapping]] = ...) -> None: ...

class Album(_message.Message):
    __slots__ = ("id", "name", "owner", "create_time", "update_time", "image_count", "cover_image_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    COVER_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    owner: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    image_count: int
    cover_image_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., image_count: _Optional[int] = ..., cover_image_id: _Optional[str] = ...) -> None: ...

class CreateAlbumRequest(_message.Message):
    __slots__ = ("name", "owner", "image_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    owner: str
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., owner: _Optional[str] = ..., image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateAlbumResponse(_message.Message):
    __slots__ = ("album",)
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    album: Album
    def __init__(self, album: _Optional[_Union[Album, _Mapping]] = ...) -> None: ...

class RenameAlbumRequest(_message.Message):
    __slots__ = ("album_id", "name")
    ALBUM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    album_id: str
    name: str
    def __init__(self, album_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RenameAlbumResponse(_message.Message):
    __slots__ = ("album",)
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    album: Album
    def __init__(self, album: _Optional[_Union[Album, _Mapping]] = ...) -> None: ...

class DeleteAlbumRequest(_message.Message):
    __slots__ = ("album_id",)
    ALBUM_ID_FIELD_NUMBER: _ClassVar[int]
    album_id: str
    def __init__(self, album_id: _Optional[str] = ...) -> None: ...

class DeleteAlbumResponse(_message.Message):
    __slots__ = ("album",)
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    album: Album
    def __init__(self, album: _Optional[_Union[Album, _Mapping]] = ...) -> None: ...

class ListAlbumsRequest(_message.Message):
    __slots__ = ("owner", "page_size", "page_token", "image_id")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    owner: str
    page_size: int
    page_token: str
    image_id: str
    def __init__(self, owner: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., image_id: _Optional[str] = ...) -> None: ...

class ListAlbumsResponse(_message.Message):
    __slots__ = ("albums", "next_page_token", "total_count")
    ALBUMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    albums: _containers.RepeatedCompositeFieldContainer[Album]
    next_page_token: str
    total_count: int
    def __init__(self, albums: _Optional[_Iterable[_Union[Album, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_count: _Optional[int] = ...) -> None: ...

class GetAlbumRequest(_message.Message):
    __slots__ = ("album_id", "page_size", "page_token", "include_images")
    ALBUM_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    album_id: str
    page_size: int
    page_token: str
    include_images: bool
    def __init__(self, album_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_images: _Optional[bool] = ...) -> None: ...

class GetAlbumResponse(_message.Message):
    __slots__ = ("album", "image_ids", "images", "next_page_token")
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    album: Album
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    images: _containers.RepeatedCompositeFieldContainer[ImageMetadata]
    next_page_token: str
    def __init__(self, album: _Optional[_Union[Album, _Mapping]] = ..., image_ids: _Optional[_Iterable[str]] = ..., images: _Optional[_Iterable[_Union[ImageMetadata, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AddToAlbumRequest(_message.Message):
    __slots__ = ("album_id", "image_ids")
    ALBUM_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    album_id: str
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, album_id: _Optional[str] = ..., image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AddToAlbumResponse(_message.Message):
    __slots__ = ("album", "added_ids", "already_ids", "not_found_ids")
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    ADDED_IDS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_IDS_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_IDS_FIELD_NUMBER: _ClassVar[int]
    album: Album
    added_ids: _containers.RepeatedScalarFieldContainer[str]
    already_ids: _containers.RepeatedScalarFieldContainer[str]
    not_found_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, album: _Optional[_Union[Album, _Mapping]] = ..., added_ids: _Optional[_Iterable[str]] = ..., already_ids: _Optional[_Iterable[str]] = ..., not_found_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveFromAlbumRequest(_message.Message):
    __slots__ = ("album_id", "image_ids")
    ALBUM_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    album_id: str
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, album_id: _Optional[str] = ..., image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveFromAlbumResponse(_message.Message):
    __slots__ = ("album", "removed_ids", "not_in_album_ids")
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    REMOVED_IDS_FIELD_NUMBER: _ClassVar[int]
    NOT_IN_ALBUM_IDS_FIELD_NUMBER: _ClassVar[int]
    album: Album
    removed_ids: _containers.RepeatedScalarFieldContainer[str]
    not_in_album_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, album: _Optional[_Union[Album, _Mapping]] = ..., removed_ids: _Optional[_Iterable[str]] = ..., not_in_album_ids: _Optional[_Iterable[str]] = ...) -> None: ...
