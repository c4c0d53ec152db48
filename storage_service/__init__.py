"""The storage service: imagerepo's images and annotations in our own column store."""

SERVICE_NAME = "imagerepo.storage.v1.StorageService"
