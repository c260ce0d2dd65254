"""MQTT messaging: topics, the JSON command/result protocol, mask encodings and the client.

Only this package imports paho-mqtt; protocol.py, masks.py and topics.py stay free of it.
"""
