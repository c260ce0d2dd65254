"""Frame sources: cameras, GStreamer pipelines, streams, files, image folders, synthetic clips.

The only package that opens cv2.VideoCapture.
"""
