"""The error function, which NumPy lacks, for the exact GELU (``minivit/layers/gelu.py``).

``fdlibm.py`` ports fdlibm's ``erf`` (1 ulp in float64), ``float32.py`` is the fast float32
version the layers run, ``coefficients.py`` holds both fits' numbers.  A learner can read the
GELU without opening this folder: all it needs is that ``normal_cdf(x) = (1 + erf(x/sqrt 2))/2``.
"""

from minivit.erf.fdlibm import erf, normal_cdf

__all__ = ["erf", "normal_cdf"]
