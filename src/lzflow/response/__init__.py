r"""NEST detector response matrices: simulate once per interaction type, fold any spectrum.

The (cS1, log10 cS2) PDF of a source with recoil spectrum dN/dE is

.. math::

    \mu_b = \int \frac{dN}{dE}\, R_b(E)\, dE
          \approx \sum_j p_j\, \hat R_{jb}, \qquad
    p_j = \int_{E_j}^{E_{j+1}} \frac{dN}{dE}\, dE, \qquad
    \hat R_{jb} = \frac{c_{jb}}{N_j},

where :math:`R_b(E)` is the probability that a recoil of energy E passes every cut and lands in
analysis bin b, :math:`N_j` the number of NEST events simulated in fine energy bin j and
:math:`c_{jb}` how many of them land in b. :math:`\hat R` is the *response matrix*. It is made once
per NEST interaction type (``NR``, ``beta``, ``gammaRay``) and shared by every source of that type,
so a new WIMP mass costs one matrix–vector product, not a NEST run. The matrix never depends on
the configured source list: its allocation of events over energy comes from a fixed *reference
family* of spectra (:func:`~lzflow.response.reference.reference_family`).

Modules:

* :mod:`.matrix` — :class:`ResponseMatrix`, :func:`build_responses` / :func:`build_response`
  (pilot → allocation → main simulation), :func:`save_response` / :func:`load_response`;
* :mod:`.allocation` — energy grid and integration, Kish n_eff and effective n_samples, the
  minimax allocation of events over energy, pilot acceptance and truncation;
* :mod:`.reference` — the reference family the allocation is sized for;
* :mod:`.nest` — seeded, chunked NEST runs on a worker pool, direct simulation.

Elsewhere: :mod:`lzflow.space` (the analysis space and interaction names) and :mod:`lzflow.pdfs`
(:func:`~lzflow.pdfs.fold_spectrum`: a PDF is a spectrum folded through a matrix).
"""

from ..space import INTERACTIONS, AnalysisSpace, canonical_interaction
from .matrix import ResponseMatrix, build_response, build_responses, load_response, save_response

__all__ = [
    "INTERACTIONS",
    "AnalysisSpace",
    "ResponseMatrix",
    "build_response",
    "build_responses",
    "canonical_interaction",
    "load_response",
    "save_response",
]
