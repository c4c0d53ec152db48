"""The onnxruntime sessions the service runs do not spin-wait and use one intra-op thread.

Measured (benchmarks/vision_bench.py, runtime_trial): EfficientNet-Lite0 at batch 2 costs the
same with or without spin-waiting at one intra-op thread (there is no worker to spin), but
with two intra-op threads spin-waiting nearly doubles its CPU per image (9.2 -> 17.6 ms), and
the service with two spinning threads per session costs 40-42 instead of 34-35 CPU ms per
image. These tests hold the settings on the sessions the engine actually opened.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.sessions import SessionThreads, open_session

_SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _spin(session: ort.InferenceSession) -> tuple[str, ...]:
    options = session.get_session_options()
    return tuple(options.get_session_config_entry(key) for key in _SPIN_KEYS)


def _engine_ort_sessions(engine: VisionEngine) -> dict[str, ort.InferenceSession]:
    found = {
        "classifier": engine._classifier._session,
        "classifier fallback": engine._classifier._fallback,
        "moderation": engine._moderation._session,
        "moderation fallback": engine._moderation._fallback,
        "text probe detector": engine._probe._session,
    }
    return {k: s for k, s in found.items() if isinstance(s, ort.InferenceSession)}


def test_default_config_has_no_spin_and_one_thread() -> None:
    config = VisionConfig.from_env({})
    assert config.ort_spin is False
    assert config.intra_op_threads == 1
    assert SessionThreads().spin is False


def test_engine_sessions_do_not_spin(engine: VisionEngine) -> None:
    sessions = _engine_ort_sessions(engine)
    # The float classifier and the probe's detector always run on onnxruntime.
    assert {"classifier", "text probe detector"} <= set(sessions)
    for what, session in sessions.items():
        assert _spin(session) == ("0", "0"), what
        assert session.get_session_options().intra_op_num_threads == 1, what


def test_spin_setting_reaches_the_session(models_dir: Path) -> None:
    path = models_dir / "efficientnet_lite0.onnx"
    assert _spin(open_session(path, SessionThreads(2, 1, spin=True))) == ("1", "1")
    assert _spin(open_session(path, SessionThreads(2, 1))) == ("0", "0")
