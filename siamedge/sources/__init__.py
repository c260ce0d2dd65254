"""Frame sources: cameras, CSI and custom GStreamer pipelines, RTSP and other streams, HTTP MJPEG
cameras, files, image folders, synthetic clips; the capture thread that reads them.

The only package that opens cv2.VideoCapture or a camera's HTTP connection.
"""
