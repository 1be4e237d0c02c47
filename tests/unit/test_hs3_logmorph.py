"""HS3 export of the multiplicative (log) morphings (issue 12): refused in one line that names the
interpolation and what works (``code4p``). A ``histfactory_dist`` morphs with ROOT's
``PiecewiseInterpolation`` codes 0/1/2/4/5/6, defined by the ±1σ templates alone and acting on T, so
the five-knot log_quartic/log_pchip (and log_code4p, which interpolates ln T) are not expressible in
it (docs/method.md, "Exports")."""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.exceptions import WorkspaceError
from lzflow.hs3 import hs3_document
from lzflow.stats.model import ShapeSystematic
from lzflow.stats.synthetic import simple_model


@pytest.mark.parametrize("interpolation", ["log_quartic", "log_pchip", "log_code4p"])
def test_log_morphings_refused_in_one_line_naming_code4p(interpolation):
    model = simple_model(n_bins=6, n_bkg=2, seed=1)
    axes = [{"name": "cS1", "edges": [0.0, 1.0, 2.0, 3.0]}, {"name": "log10cS2", "edges": [2.0, 3.0, 4.0]}]
    T = np.vstack([model.signal[None], model.backgrounds])
    sy = ShapeSystematic("nr_light", up=T * 1.2, down=T * 0.8, up2=T * 1.5, down2=T * 0.6)
    shaped = model.with_shape_systematics([sy], interpolation)
    with pytest.raises(WorkspaceError, match=rf"^shape_systematics alpha_nr_light: interpolation '{interpolation}' "
                                             r"cannot be written as a histfactory_dist \(ROOT's PiecewiseInterpolation "
                                             r"codes 0/1/2/4/5/6 use the ±1 sigma templates only.*expected 'code4p'"
                       ) as err:
        hs3_document(shaped, axes, "six bins")
    assert "\n" not in str(err.value)
    additive = model.with_shape_systematics([sy], "code4p")  # what works: histosys, ROOT code 4
    doc = hs3_document(additive, axes, "six bins")
    mods = [m for s in doc["distributions"][0]["samples"] for m in s["modifiers"] if m["name"] == "alpha_nr_light"]
    assert mods and all(m["type"] == "histosys" for m in mods)
