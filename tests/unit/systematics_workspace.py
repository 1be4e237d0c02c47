"""The default analysis's 40 GeV workspace with its 5 shape systematics (tests/data), as the model
the further-start tests fit: signal at the CLs+b median expected limit."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from lzflow.workspace import workspace_model

PATH = Path(__file__).parents[1] / "data" / "workspace_m40_systematics.json.gz"


def median_limit_model(interpolation: str):
    """The workspace's model with ``interpolation`` for its shape systematics and the signal scaled
    to the CLs+b median expected limit (μ = 1 there)."""
    ws = json.loads(gzip.decompress(PATH.read_bytes()))
    m = workspace_model(ws)
    m = m.with_shape_systematics(m.shape_systematics, interpolation)
    return m.with_signal(m.signal * ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"])
