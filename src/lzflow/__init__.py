"""lzflow: projected WIMP sensitivity of a liquid-xenon TPC, from detector YAML to limit curve.

Stages (one module each, each callable from the ``lzflow`` console script):
config → detector → spectra → response (NEST) → pdfs → workspace → toys → merge → curve.
"""

__version__ = "0.1.0"
