"""Progress bars: drawn on a terminal, silent in batch logs (pipes and files)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import subprocess
import sys

import pytest

from lzflow.progress import show_progress

# 600 toys of the synthetic LZ-like model: long enough for tqdm to draw.
SCRIPT = """
from lzflow.stats.synthetic import lz_like_model
from lzflow.stats.toys import ToyRequest, run_toys
run_toys(lz_like_model(), ToyRequest(base_seed=1, mass_key=400000, poi_index=0, hypothesis="sb", mu=1.0,
                                     toy_indices=range(600), n_threads=1, block_size=128))
print("done")
"""


def _run(stderr_to_terminal: bool, env_extra: dict[str, str]) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LZFLOW_PROGRESS"}
    env.update(env_extra)
    if not stderr_to_terminal:
        r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
        return r.stdout, r.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a real terminal has a size
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.communicate(timeout=300)[0].decode()
    os.close(master)
    return out, b"".join(chunks).decode(errors="replace")


def test_show_progress_follows_the_stream_and_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv("LZFLOW_PROGRESS", raising=False)
    with open(tmp_path / "log", "w") as log:
        assert not show_progress(log)
    monkeypatch.setenv("LZFLOW_PROGRESS", "1")
    with open(tmp_path / "log", "w") as log:
        assert show_progress(log)
    monkeypatch.setenv("LZFLOW_PROGRESS", "0")
    assert not show_progress()


@pytest.mark.parametrize("terminal", [True, False])
def test_toy_progress_bar_only_on_a_terminal(terminal):
    out, err = _run(terminal, {})
    assert out.strip() == "done"
    if terminal:
        assert "toys sb poi0" in err and "/600" in err
    else:
        assert "toys sb" not in err and "\r" not in err, err[-500:]
