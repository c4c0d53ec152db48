"""Where each service listens and how the others reach it, from one base port.

`IMAGEREPO_BASE_PORT=B` puts the gateway on B, storage on B+1, vision on B+2 and search on B+3,
and each gRPC service's metrics on its port + 10. Without it the ports are the historical
defaults (8080, 50051, 50052, 50053; metrics 50061-50063). A variable set explicitly
(`STORAGE_PORT`, `GATEWAY_STORAGE_ADDR`, `STORAGE_METRICS_PORT`, ...) always wins, and every
address a client dials is derived from the same ports the servers bind, so moving one setting
moves all of them consistently. `python -m stack` and the gateway's config both use this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.settings import env_port

GRPC_ROLES = ("storage", "vision", "search")
ROLES = (*GRPC_ROLES, "gateway")
DEFAULT_PORTS = {"gateway": 8080, "storage": 50051, "vision": 50052, "search": 50053}
BASE_OFFSETS = {"gateway": 0, "storage": 1, "vision": 2, "search": 3}
METRICS_OFFSET = 10


@dataclass(frozen=True)
class Ports:
    ports: dict[str, int]
    metrics: dict[str, int]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        base = env_port(env, "IMAGEREPO_BASE_PORT")
        ports: dict[str, int] = {}
        for role in ROLES:
            explicit = env_port(env, f"{role.upper()}_PORT")
            if explicit is not None:
                ports[role] = explicit
            elif base is not None:
                ports[role] = base + BASE_OFFSETS[role]
            else:
                ports[role] = DEFAULT_PORTS[role]
        metrics = {
            role: env_port(env, f"{role.upper()}_METRICS_PORT") or ports[role] + METRICS_OFFSET
            for role in GRPC_ROLES
        }
        return cls(ports, metrics)

    def dial(self, role: str, env: Mapping[str, str]) -> str:
        """The address a client on this host dials for `role` (loopback for a wildcard)."""
        host = env.get(f"{role.upper()}_HOST", "127.0.0.1") or "127.0.0.1"
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"{host}:{self.ports[role]}"

    def addresses(self, env: Mapping[str, str]) -> dict[str, str]:
        """The client-side address settings, explicit ones kept."""
        derived = {
            "GATEWAY_STORAGE_ADDR": self.dial("storage", env),
            "GATEWAY_VISION_ADDR": self.dial("vision", env),
            "GATEWAY_SEARCH_ADDR": self.dial("search", env),
            "SEARCH_VISION_ADDR": self.dial("vision", env),
        }
        return {name: env.get(name) or value for name, value in derived.items()}
