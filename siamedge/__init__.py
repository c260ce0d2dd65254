"""siamedge: a SiamMask segmentation tracker that runs as a service on edge cameras.

The package never imports heavy optional back-ends (onnxruntime, torch) at import time.
"""

__version__ = "0.1.0"
