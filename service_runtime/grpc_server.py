"""A gRPC server with the options every imagerepo service uses."""

from __future__ import annotations

from concurrent import futures

import grpc

# Images travel in chunks of at most 1 MiB, but GetImage may carry a small image whole and
# annotation updates carry a 1280-d vector: leave headroom above the 4 MiB default.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def new_server(max_workers: int) -> grpc.Server:
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )


def channel_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
