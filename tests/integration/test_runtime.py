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


@pytest.mark.parametrize(("interval", "expected"), [(0.001, 0.001), (0.0, 0.005)])
def test_the_dispatching_process_freezes_its_startup_objects_and_shortens_the_switch_interval(
        interval: float, expected: float) -> None:
    out = _run("import gc, sys\n"
               "import app, workers.celery_app\n"
               "from app.runtime import tune_dispatcher_process\n"
               f"tune_dispatcher_process({interval!r})\n"
               "print(gc.get_freeze_count(), sys.getswitchinterval())")
    frozen, switch = int(out[0]), float(out[1])
    assert frozen > 50_000  # the app and its libraries: out of the collector's full passes
    assert switch == pytest.approx(expected)


@pytest.mark.parametrize(("freeze", "threshold", "gen0"),
                         [(True, 50_000, 50_000), (True, 0, 700), (False, 50_000, 700)])
def test_a_server_process_freezes_what_create_app_loaded_and_raises_the_gc_threshold_unless_told_not_to(
        freeze: bool, threshold: int, gen0: int, tmp_path: Path) -> None:
    out = _run("import gc\n"
               "from app import create_app\n"
               f"create_app('testing', {{'GC_FREEZE_ON_START': {freeze!r}, 'GC_THRESHOLD': {threshold!r}, "
               f"'SQLALCHEMY_DATABASE_URI': 'sqlite:///{tmp_path / 'app.db'}', 'EVENT_LOG_URL': 'sql'}})\n"
               "print(gc.get_freeze_count(), *gc.get_threshold())")
    frozen, thresholds = int(out[-4]), [int(v) for v in out[-3:]]
    assert (frozen > 50_000) is freeze
    assert thresholds == [gen0, 10, 10]  # only the first generation's threshold moves
