import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_PROBE = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("streamlit_app.py", default_timeout=60).run()
print(json.dumps({
    "exception": [str(e.value) for e in at.exception],
    "info": [i.value for i in at.info],
    "tensorflow_loaded": "tensorflow" in sys.modules,
}))
"""


def test_app_opens_with_empty_state_and_without_tensorflow(tmp_path):
    # A fresh interpreter, so that TensorFlow imported by other tests cannot hide an import by the app.
    env = dict(os.environ, STUDY_ARTIFACTS=str(tmp_path / "no-artifacts"))
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["exception"] == []
    assert any("No results yet" in text for text in result["info"])
    assert result["tensorflow_loaded"] is False
