"""SearchService: translates gRPC requests to index calls and errors to status codes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import NoReturn

import grpc
import numpy as np

from imagerepo.common.v1 import common_pb2
from imagerepo.search.v1 import search_service_pb2 as pb
from imagerepo.search.v1 import search_service_pb2_grpc as pb_grpc
from search_service.document import Document, Label, Status
from search_service.durable_index import DurableIndex
from search_service.engine import (
    SORT_RELEVANCE,
    SORT_TAKEN_NEWEST,
    SORT_TAKEN_OLDEST,
    Filters,
)
from search_service.errors import (
    ImageNotFoundError,
    InvalidDocumentError,
    NoFeatureVectorError,
)
from search_service.exif import typed_fields
from search_service.feed_consumer import FeedConsumer

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 200
DEFAULT_K, MAX_K = 10, 100
DEFAULT_SUGGESTIONS, MAX_SUGGESTIONS = 10, 100
MAX_QUERY_CHARS = 1000
_SORTS = {
    pb.SORT_ORDER_UNSPECIFIED: SORT_RELEVANCE,
    pb.SORT_ORDER_RELEVANCE: SORT_RELEVANCE,
    pb.SORT_ORDER_TAKEN_NEWEST: SORT_TAKEN_NEWEST,
    pb.SORT_ORDER_TAKEN_OLDEST: SORT_TAKEN_OLDEST,
}


FOLLOWS_FEED = "search follows storage's change feed; write to storage instead"


class SearchServicer(pb_grpc.SearchServiceServicer):
    def __init__(self, index: DurableIndex, feed: FeedConsumer | None = None) -> None:
        self._index = index
        # With a feed, storage is the only writer: the write RPCs are refused.
        self._feed = feed

    def _refuse_writes(self, context: grpc.ServicerContext) -> None:
        if self._feed is not None:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, FOLLOWS_FEED)

    def IndexImage(self, request: pb.IndexImageRequest, context: grpc.ServicerContext):
        self._refuse_writes(context)
        if not request.HasField("document") or not request.document.image_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "document.image_id is required")
        try:
            self._index.put(document_from_proto(request.document))
        except InvalidDocumentError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.IndexImageResponse()

    def RemoveImage(self, request: pb.RemoveImageRequest, context: grpc.ServicerContext):
        self._refuse_writes(context)
        if not request.image_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "image_id is required")
        return pb.RemoveImageResponse(removed=self._index.remove(request.image_id))

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext):
        query = request.query.strip()
        if not query:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "query is empty")
        if len(query) > MAX_QUERY_CHARS:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"query over {MAX_QUERY_CHARS} chars")
        if request.page_size < 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offset = _page_offset(request.page_token, context)
        sort = _SORTS.get(request.sort)
        if sort is None:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown sort {request.sort}")
        result = self._index.search(
            query,
            _filters(request.filters, context),
            limit=size,
            offset=offset,
            semantic=not request.disable_semantic,
            sort=sort,
        )
        reply = pb.SearchResponse(
            total_hits=result.total,
            fell_back_to_or=result.fell_back_to_or,
            closest=list(result.closest),
            note=result.note,
        )
        for hit in result.hits:
            reply.hits.add(
                image_id=hit.image_id,
                score=hit.score,
                reasons=[
                    pb.MatchReason(field=r.field, term=r.term, score=r.score) for r in hit.reasons
                ],
            )
        if offset + len(result.hits) < result.total:
            reply.next_page_token = str(offset + len(result.hits))
        return reply

    def SimilarImages(self, request: pb.SimilarImagesRequest, context: grpc.ServicerContext):
        which = request.WhichOneof("query")
        if which is None:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "image_id or vector is required")
        if request.k < 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "k must not be negative")
        k = min(request.k or DEFAULT_K, MAX_K)
        filters = _filters(request.filters, context)
        try:
            if which == "image_id":
                if not request.image_id:
                    _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "image_id is empty")
                result = self._index.similar(
                    image_id=request.image_id, k=k, filters=filters, exact=request.exact
                )
            else:
                vector = np.asarray(request.vector.values, dtype=np.float32)
                result = self._index.similar(
                    vector=vector, k=k, filters=filters, exact=request.exact
                )
        except ImageNotFoundError as exc:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except NoFeatureVectorError as exc:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except InvalidDocumentError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.SimilarImagesResponse(
            hits=[pb.SimilarHit(image_id=i, similarity=s) for i, s in result.hits],
            approximate=result.approximate,
        )

    def FindDuplicates(self, request: pb.FindDuplicatesRequest, context: grpc.ServicerContext):
        if not 0.0 <= request.near_threshold <= 1.0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "near_threshold must be in 0..1")
        try:
            found = self._index.duplicates(request.near_threshold, request.image_id)
        except ImageNotFoundError as exc:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return pb.FindDuplicatesResponse(
            exact_groups=[pb.DuplicateGroup(image_ids=ids, sha256=sha) for ids, sha in found.exact],
            near_groups=[
                pb.DuplicateGroup(image_ids=ids, min_similarity=sim) for ids, sim in found.near
            ],
        )

    def Suggest(self, request: pb.SuggestRequest, context: grpc.ServicerContext):
        if not request.prefix.strip():
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "prefix is empty")
        if request.limit < 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "limit must not be negative")
        limit = min(request.limit or DEFAULT_SUGGESTIONS, MAX_SUGGESTIONS)
        found = self._index.suggest(request.prefix, limit)
        return pb.SuggestResponse(
            suggestions=[
                pb.Suggestion(text=text, document_count=count, field=name)
                for text, count, name in found
            ]
        )

    def GetStats(self, request: pb.GetStatsRequest, context: grpc.ServicerContext):
        s = self._index.stats()
        reply = pb.GetStatsResponse(
            document_count=s.document_count,
            term_count=s.term_count,
            posting_bytes=s.posting_bytes,
            index_disk_bytes=s.index_disk_bytes,
            vector_count=s.vector_count,
            approximate_index=s.approximate_index,
            vector_backend=s.vector_backend,
            load_time_s=s.load_time_s,
            applied_seq=s.applied_seq,
            head_seq=s.applied_seq,
            replay_progress=1.0,
            snapshot_failures=s.snapshot_failures,
            last_snapshot_error=s.last_snapshot_error,
            compactions=s.compactions,
            compaction_failures=s.compaction_failures,
            last_compaction_error=s.last_compaction_error,
            compactions_postponed=s.compactions_postponed,
            last_compaction_postponed=s.last_compaction_postponed,
        )
        if self._feed is not None:
            feed = self._feed.status()
            reply.head_seq = feed.head_seq
            reply.lag_seqs = feed.lag_seqs
            reply.replaying = feed.replaying
            reply.replay_progress = feed.replay_progress
            reply.following = feed.connected
            reply.feed_error = feed.last_error
            reply.feed_damaged_changes = feed.damaged_changes
            reply.last_damaged_change = feed.last_damaged
        return reply

    def Rebuild(self, request_iterator: Iterator[pb.RebuildRequest], context: grpc.ServicerContext):
        """Every usable document replaces the index; unusable ones are skipped and reported."""
        self._refuse_writes(context)
        started = time.perf_counter()

        def documents() -> Iterator[Document | InvalidDocumentError]:
            for number, request in enumerate(request_iterator):
                try:
                    yield document_from_proto(request.document)
                except InvalidDocumentError as exc:
                    who = request.document.image_id or f"document #{number + 1}"
                    yield InvalidDocumentError(f"{who}: {exc}")

        result = self._index.rebuild(documents())
        return pb.RebuildResponse(
            indexed_count=result.indexed,
            elapsed_s=time.perf_counter() - started,
            skipped_count=result.skipped_count,
            skipped=result.skipped,
        )


def document_from_proto(doc: pb.SearchDocument) -> Document:
    """A proto document as the index's Document; InvalidDocumentError when it cannot be one."""
    if not doc.image_id:
        raise InvalidDocumentError("document.image_id is required")
    try:
        status = Status(doc.status) if doc.status else Status.READY
    except ValueError as exc:
        raise InvalidDocumentError(f"unknown status {doc.status}") from exc
    vector = np.asarray(doc.feature_vector, dtype=np.float32) if doc.feature_vector else None
    if vector is not None and not np.isfinite(vector).all():
        raise InvalidDocumentError("feature_vector holds NaN or infinity")
    taken, make, model = typed_fields(doc.exif)
    return Document(
        image_id=doc.image_id,
        filename=doc.filename,
        owner=doc.owner,
        labels=tuple(
            Label(lb.name, float(lb.probability), tuple(lb.synonyms), lb.class_index)
            for lb in doc.labels
        ),
        tags=tuple(doc.tags),
        ocr_text=doc.ocr_text,
        moderation_score=float(doc.moderation_score),
        status=status,
        feature_vector=vector,
        sha256=doc.sha256,
        created_at_unix_ms=doc.created_at_unix_ms,
        taken_at_unix_s=taken,
        camera_make=make,
        camera_model=model,
    )


# SearchFilters.allowed_ids holds at most this many ids (an album's members).
MAX_ALLOWED_IDS = 100_000


def _filters(filters: pb.SearchFilters, context: grpc.ServicerContext) -> Filters:
    statuses = []
    for value in filters.statuses:
        if value not in common_pb2.AnalysisStatus.values():
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown status {value}")
        statuses.append(Status(value))
    if filters.taken_from_unix_s < 0 or filters.taken_until_unix_s < 0:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "taken_* must not be negative")
    if 0 < filters.taken_until_unix_s <= filters.taken_from_unix_s:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "taken_until must be after taken_from")
    return Filters(
        owner=filters.owner,
        include_moderated=filters.include_moderated,
        statuses=tuple(statuses),
        taken_from_unix_s=filters.taken_from_unix_s,
        taken_until_unix_s=filters.taken_until_unix_s,
        favourites_only=filters.favourites_only,
        allowed_ids=_allowed_ids(filters, context),
    )


def _allowed_ids(filters: pb.SearchFilters, context: grpc.ServicerContext) -> frozenset[str] | None:
    if not filters.HasField("allowed_ids"):
        return None
    ids = filters.allowed_ids.image_ids
    if len(ids) > MAX_ALLOWED_IDS:
        _abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{len(ids)} allowed ids, over the limit of {MAX_ALLOWED_IDS}",
        )
    return frozenset(ids)


def _page_offset(token: str, context: grpc.ServicerContext) -> int:
    if not token:
        return 0
    if not token.isdigit():
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"bad page_token {token!r}")
    return int(token)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # unreachable; keeps type checkers honest
