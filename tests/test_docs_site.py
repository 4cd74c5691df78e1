"""The documentation site builds with warnings as errors: no page missing from the navigation, no broken link, every
exported name found by the API reference."""

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).parent.parent


def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_the_api_reference_covers_every_export():
    import trl_irl

    reference = (ROOT / "docs" / "api.md").read_text()
    assert {name for name in trl_irl.__all__ if f"::: trl_irl.{name}" not in reference} == set()
