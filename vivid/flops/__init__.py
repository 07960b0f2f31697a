"""Analytic FLOPs of a VIVID edit and of a training step, from the architecture configs.

Modules: `counter` (an edit, per component, and the KIVE comparison), `formulas` (what every base shares: the
clip-size check, a convolution, a T5-style text encoder), `cogvideox` and `wan` (each base's formulas).
"""
