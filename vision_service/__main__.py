"""`python -m vision_service`: load and verify the models, serve until SIGTERM."""

from __future__ import annotations

import logging

from service_runtime.grpc_server import ListenError
from service_runtime.logs import configure_logging
from service_runtime.security import SecurityConfigError
from service_runtime.serve import serve_until_signalled
from service_runtime.settings import SettingError, load_or_exit, not_started
from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.errors import ModelFileError
from vision_service.server import build_server
from vision_service.servicer import EngineSlot

log = logging.getLogger("vision_service")


def main() -> None:
    config = load_or_exit("vision", VisionConfig.from_env)
    configure_logging("vision", config.log_level)
    slot = EngineSlot()
    try:
        server, port, health = build_server(f"{config.host}:{config.port}", config, slot)
        server.start()
    except ListenError as exc:
        not_started("vision", exc.naming("VISION_HOST, VISION_PORT"))
    except (SettingError, SecurityConfigError) as exc:  # IMAGEREPO_METRICS_PORT, TLS files
        not_started("vision", str(exc))
    log.info("started; loading models", extra={"port": port, "models_dir": str(config.models_dir)})
    try:
        slot.set(VisionEngine.load(config))
    except ModelFileError as exc:
        log.error("refusing to serve: %s", exc)
        server.stop(grace=None)
        # Exit 2, like a bad setting: a missing or altered model file stays so however often
        # vision is restarted (python -m stack gives up at once instead of loading it 5 times).
        not_started("vision", f"{exc} (VISION_MODELS_DIR is {config.models_dir})")
    health.set_serving(True)
    log.info("serving", extra={"port": port, "models": [m.name for m in slot.get().models]})
    serve_until_signalled(server, health, grace_s=config.grace_s, on_stop=slot.close)


if __name__ == "__main__":
    main()
