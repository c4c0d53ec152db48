"""Domain errors of the search index; the servicer maps each to one gRPC status code."""


class SearchError(Exception):
    """Base of every error the index raises on purpose."""


class InvalidDocumentError(SearchError, ValueError):
    """A document or query the index cannot take (bad vector size, empty id...)."""


class ImageNotFoundError(SearchError, LookupError):
    def __init__(self, image_id: str) -> None:
        super().__init__(f"no image with id {image_id!r} in the index")
        self.image_id = image_id


class NoFeatureVectorError(SearchError):
    def __init__(self, image_id: str) -> None:
        super().__init__(f"image {image_id!r} has no feature vector (not analysed yet?)")
        self.image_id = image_id


class IndexFormatError(SearchError):
    """The persisted index was written in another format version or is damaged."""
