from __future__ import annotations

import subprocess
import sys

import lit_metric


def test_import_is_lazy_about_heavy_optional_deps() -> None:
    code = "import sys, lit_metric, lit_metric.losses, lit_metric.data; print(sorted(m for m in ('lightly', 'wandb') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_public_api() -> None:
    assert lit_metric.__version__
    for name in lit_metric.__all__:
        assert hasattr(lit_metric, name), name
