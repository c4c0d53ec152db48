"""The search service: our inverted index with semantic expansion, and similar-image search."""

SERVICE_NAME = "imagerepo.search.v1.SearchService"
