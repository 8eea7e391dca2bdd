"""`vimi generate` with prompt bytes that are not UTF-8 (a shell's $'\xff bad'): exit 2 and one clear line."""

import subprocess
import sys
from pathlib import Path


def test_generate_rejects_a_prompt_that_is_not_utf8(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    # A real process, so the bytes reach vimi as a shell passes them: through argv, decoded by Python.
    argv = [sys.executable, "-m", "vimi.cli", "generate", b"\xff bad"]
    argv += ["--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, timeout=300)
    stderr = done.stderr.decode("utf-8", errors="replace")
    assert done.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [
        "vimi generate: error: prompt text is not valid UTF-8: byte 0xff at character 0 "
        "(near '\\udcff bad'); pass the prompt as UTF-8 text"
    ], stderr
    assert not out.exists()
