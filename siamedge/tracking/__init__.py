"""Pure numpy tracker math: crops, geometry, mask post-processing and per-target state.

Nothing in this package does I/O, logging of frames, or touches a global.
"""
