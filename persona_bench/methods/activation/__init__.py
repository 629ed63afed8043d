"""Activation steering: persona vector -> small network -> vectors added to the residual stream."""
from . import method  # noqa: F401  (registers the method "activation" and the steering family "activation")
