"""A namesake `kernels` package (Hugging Face's, which transformers>=5.25 installs) would hide
archbench's kernels/; importing models then fails with one message naming the fix."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_a_namesake_kernels_package_gets_one_error_naming_the_fix(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("def get_kernel(name): ...\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    p = subprocess.run([sys.executable, "-c", "import models"], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert p.returncode != 0
    assert "finds another package" in p.stderr and str(tmp_path / "kernels") in p.stderr
    assert "pip uninstall kernels" in p.stderr and "transformers<5.25" in p.stderr
    ok = subprocess.run([sys.executable, "-c", "import models, kernels; print(kernels.__file__)"],
                        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(ROOT / "kernels" / "__init__.py")
