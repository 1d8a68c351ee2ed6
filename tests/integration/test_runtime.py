"""Server processes tune the Python runtime (app/runtime.py): checked in processes of their own, as freezing lasts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import BASE_DIR


def _run(code: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=120,
                          check=True).stdout.split()


@pytest.mark.parametrize(("interval", "expected", "threshold", "gen0"),
                         [(0.001, 0.001, 50_000, 50_000), (0.0, 0.005, 0, 700)])
def test_the_dispatching_process_freezes_its_startup_objects_and_tunes_switching_and_collection(
        interval: float, expected: float, threshold: int, gen0: int) -> None:
    out = _run("import gc, sys\n"
               "import app, workers.celery_app\n"
               "from app.runtime import tune_dispatcher_process\n"
               f"tune_dispatcher_process({interval!r}, gc_threshold={threshold!r})\n"
               "print(gc.get_freeze_count(), sys.getswitchinterval(), *gc.get_threshold())")
    frozen, switch, thresholds = int(out[0]), float(out[1]), [int(v) for v in out[2:]]
    assert frozen > 50_000  # the app and its libraries: out of the collector's full passes
    assert switch == pytest.approx(expected)
    assert thresholds == [gen0, 10, 10]  # only the first generation's threshold moves


def test_the_gc_threshold_is_50000_unless_configured() -> None:
    from app.services.dispatch_config import settings

    assert settings({}).gc_threshold == 50_000
    assert settings({"WEBHOOK_GC_THRESHOLD": "0"}).gc_threshold == 0


@pytest.mark.parametrize("freeze", [True, False])
def test_a_web_process_freezes_what_create_app_loaded_unless_told_not_to(freeze: bool, tmp_path: Path) -> None:
    out = _run("import gc\n"
               "from app import create_app\n"
               f"create_app('testing', {{'GC_FREEZE_ON_START': {freeze!r}, "
               f"'SQLALCHEMY_DATABASE_URI': 'sqlite:///{tmp_path / 'app.db'}', 'EVENT_LOG_URL': 'sql'}})\n"
               "print(gc.get_freeze_count())")
    assert (int(out[-1]) > 50_000) is freeze
