"""SearchService v2 (imagerepo.search.v2): the v2 contract over the same index as v1.

It only translates: v2 messages to the index's calls, reusing v1's validation and filter
translation (a v2 filter set becomes the v1 one, so both versions filter alike), and answers
in v2 terms (enums for match fields and vector backends, Timestamps, Durations).

Search pages are resumed from an opaque token, not from a count: the token carries a
fingerprint of the query (query, filters, sort, semantic), the position reached and the id
of the last hit returned. The next page looks for that hit near its old position and goes on
right after it, so images indexed or removed above it between two pages neither repeat nor
skip a hit; if the hit left the index, the page resumes at the old position.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from imagerepo.search.v1 import search_service_pb2 as v1
from imagerepo.search.v2 import search_service_pb2 as pb
from imagerepo.search.v2 import search_service_pb2_grpc as pb_grpc
from search_service.durable_index import DurableIndex
from search_service.engine import SearchResult
from search_service.feed_consumer import FeedConsumer
from search_service.servicer import (
    _SORTS,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    SearchServicer,
    _abort,
    _filters,
)

MATCH_FIELDS = {
    "labels": pb.MATCH_FIELD_LABELS,
    "concepts": pb.MATCH_FIELD_CONCEPTS,
    "tags": pb.MATCH_FIELD_TAGS,
    "ocr_text": pb.MATCH_FIELD_OCR_TEXT,
    "filename": pb.MATCH_FIELD_FILENAME,
    "owner": pb.MATCH_FIELD_OWNER,
    "taken": pb.MATCH_FIELD_TAKEN,
    "camera": pb.MATCH_FIELD_CAMERA,
    "colours": pb.MATCH_FIELD_COLOURS,
    "semantic": pb.MATCH_FIELD_SEMANTIC,
}
VECTOR_BACKENDS = {
    "exact": pb.VECTOR_BACKEND_EXACT,
    "hnswlib": pb.VECTOR_BACKEND_HNSWLIB,
    "usearch": pb.VECTOR_BACKEND_USEARCH,
    "faiss": pb.VECTOR_BACKEND_FAISS,
}
# How far either side of its old position the last hit of a page is looked for.
ANCHOR_WINDOW = 64
TOKEN_VERSION = 1


@dataclass(frozen=True)
class SearchCursor:
    """Where a page of one query ended: decoded from and encoded to an opaque page token."""

    fingerprint: str
    position: int
    last_id: str

    def encode(self) -> str:
        raw = json.dumps(
            {"v": TOKEN_VERSION, "q": self.fingerprint, "p": self.position, "id": self.last_id},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str) -> SearchCursor:
        """ValueError for anything that is not a token this service issued."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            fields = json.loads(raw)
            cursor = cls(str(fields["q"]), int(fields["p"]), str(fields["id"]))
            version = fields["v"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError("not a page token of this service") from exc
        if version != TOKEN_VERSION or cursor.position < 1 or not cursor.last_id:
            raise ValueError("not a page token of this service")
        return cursor


def query_fingerprint(request: pb.SearchRequest) -> str:
    """What a page token is bound to: the same query, filters, sort and semantic switch."""
    digest = hashlib.sha256()
    for part in (
        request.query.strip().encode(),
        request.filters.SerializeToString(deterministic=True),
        str(request.sort).encode(),
        b"1" if request.disable_semantic else b"0",
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:16]


def v1_filters(filters: pb.SearchFilters) -> v1.SearchFilters:
    """The v1 filter set with the same meaning (v1's translation then validates it)."""
    out = v1.SearchFilters(
        owner=filters.owner,
        include_moderated=filters.include_moderated,
        statuses=list(filters.statuses),  # type: ignore[arg-type]
        favourites_only=filters.favourites_only,
    )
    if filters.HasField("taken_from"):
        out.taken_from_unix_s = filters.taken_from.seconds
    if filters.HasField("taken_until"):
        out.taken_until_unix_s = filters.taken_until.seconds
    if filters.HasField("allowed_ids"):
        out.allowed_ids.SetInParent()
        out.allowed_ids.image_ids.extend(filters.allowed_ids.image_ids)
    return out


class SearchServicerV2(pb_grpc.SearchServiceServicer):
    def __init__(self, index: DurableIndex, feed: FeedConsumer | None = None) -> None:
        self._index = index
        self._feed = feed
        # v1's GetStats holds the feed-status translation: reused, not repeated.
        self._v1 = SearchServicer(index, feed)

    def _v1_filters(
        self, filters: pb.SearchFilters, context: grpc.ServicerContext
    ) -> v1.SearchFilters:
        if filters.HasField("taken_from") and filters.taken_from.seconds <= 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "taken_from must be after 1970")
        if filters.HasField("taken_until") and filters.taken_until.seconds <= 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "taken_until must be after 1970")
        return v1_filters(filters)

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext):
        query = request.query.strip()
        if not query:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "query is empty")
        if len(query) > MAX_QUERY_CHARS:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"query over {MAX_QUERY_CHARS} chars")
        if request.page_size < 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        sort = _SORTS.get(request.sort)  # type: ignore[call-overload]
        if sort is None:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown sort {request.sort}")
        filters = _filters(self._v1_filters(request.filters, context), context)
        fingerprint = query_fingerprint(request)
        cursor = None
        if request.page_token:
            try:
                cursor = SearchCursor.decode(request.page_token)
            except ValueError as exc:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"bad page_token: {exc}")
            if cursor.fingerprint != fingerprint:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "page_token belongs to another query, filter set or sort",
                )

        def run(offset: int, limit: int) -> SearchResult:
            return self._index.search(
                query,
                filters,
                limit=limit,
                offset=offset,
                semantic=not request.disable_semantic,
                sort=sort,
            )

        start, result, hits = 0, None, None
        if cursor is None:
            result = run(0, size)
            hits = result.hits
        else:
            # Find the last hit near where it was, and go on right after it.
            window_start = max(0, cursor.position - ANCHOR_WINDOW)
            window = run(window_start, cursor.position - window_start + ANCHOR_WINDOW + size)
            ids = [hit.image_id for hit in window.hits]
            if cursor.last_id in ids:
                start = window_start + ids.index(cursor.last_id) + 1
            else:
                start = cursor.position
            result = window
            hits = window.hits[start - window_start : start - window_start + size]
            if len(hits) < size and window_start + len(window.hits) < window.total:
                result = run(start, size)
                hits = result.hits
        reply = pb.SearchResponse(
            total_hits=result.total,
            fell_back_to_or=result.fell_back_to_or,
            closest=list(result.closest),
            note=result.note,
        )
        for hit in hits:
            reply.hits.add(
                image_id=hit.image_id,
                score=hit.score,
                reasons=[
                    pb.MatchReason(
                        field=MATCH_FIELDS.get(r.field, pb.MATCH_FIELD_UNSPECIFIED),
                        term=r.term,
                        score=r.score,
                    )
                    for r in hit.reasons
                ],
            )
        end = start + len(hits)
        if hits and end < result.total:
            reply.next_page_token = SearchCursor(fingerprint, end, hits[-1].image_id).encode()
        return reply

    def SimilarImages(self, request: pb.SimilarImagesRequest, context: grpc.ServicerContext):
        old = v1.SimilarImagesRequest(
            k=request.k, filters=self._v1_filters(request.filters, context), exact=request.exact
        )
        which = request.WhichOneof("query")
        if which == "image_id":
            old.image_id = request.image_id
        elif which == "vector":
            old.vector.values.extend(request.vector.values)
        reply = self._v1.SimilarImages(old, context)
        return pb.SimilarImagesResponse(
            hits=[pb.SimilarHit(image_id=h.image_id, similarity=h.similarity) for h in reply.hits],
            approximate=reply.approximate,
        )

    def FindDuplicates(self, request: pb.FindDuplicatesRequest, context: grpc.ServicerContext):
        if request.HasField("near_threshold") and not 0.0 < request.near_threshold <= 1.0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "near_threshold must be in (0, 1]")
        reply = self._v1.FindDuplicates(
            v1.FindDuplicatesRequest(
                near_threshold=request.near_threshold, image_id=request.image_id
            ),
            context,
        )
        return pb.FindDuplicatesResponse(
            exact_groups=[
                pb.ExactDuplicateGroup(image_ids=g.image_ids, sha256=g.sha256)
                for g in reply.exact_groups
            ],
            near_groups=[
                pb.NearDuplicateGroup(image_ids=g.image_ids, min_similarity=g.min_similarity)
                for g in reply.near_groups
            ],
        )

    def Suggest(self, request: pb.SuggestRequest, context: grpc.ServicerContext):
        reply = self._v1.Suggest(
            v1.SuggestRequest(prefix=request.prefix, limit=request.limit), context
        )
        return pb.SuggestResponse(
            suggestions=[
                pb.Suggestion(
                    text=s.text,
                    document_count=s.document_count,
                    field=MATCH_FIELDS.get(s.field, pb.MATCH_FIELD_UNSPECIFIED),
                )
                for s in reply.suggestions
            ]
        )

    def GetStats(self, request: pb.GetStatsRequest, context: grpc.ServicerContext):
        old = self._v1.GetStats(v1.GetStatsRequest(), context)
        load = Duration()
        load.FromNanoseconds(int(old.load_time_s * 1e9))
        return pb.GetStatsResponse(
            document_count=old.document_count,
            term_count=old.term_count,
            posting_bytes=old.posting_bytes,
            index_disk_bytes=old.index_disk_bytes,
            vector_count=old.vector_count,
            approximate_index=old.approximate_index,
            vector_backend=VECTOR_BACKENDS.get(old.vector_backend, pb.VECTOR_BACKEND_UNSPECIFIED),
            load_duration=load,
            applied_seq=old.applied_seq,
            head_seq=old.head_seq,
            lag_seqs=old.lag_seqs,
            replaying=old.replaying,
            replay_progress=old.replay_progress,
            following=old.following,
            feed_error=old.feed_error,
            feed_damaged_changes=old.feed_damaged_changes,
            last_damaged_change=old.last_damaged_change,
            snapshot_failures=old.snapshot_failures,
            last_snapshot_error=old.last_snapshot_error,
            compactions=old.compactions,
            compaction_failures=old.compaction_failures,
            last_compaction_error=old.last_compaction_error,
            compactions_postponed=old.compactions_postponed,
            last_compaction_postponed=old.last_compaction_postponed,
        )
