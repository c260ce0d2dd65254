"""The optional live web view inside the daemon: page, MJPEG preview and HTTP command API.

Loaded only when `web.enabled` is set; adds no dependency beyond the standard library.
"""
