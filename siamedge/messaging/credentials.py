"""Broker credentials from the settings: the password (file or environment) and the TLS context.

Reads only the files and variables the settings name; never logs a password or takes it from YAML.
"""

from __future__ import annotations

import ssl

from siamedge.config import MqttSettings, TlsSettings
from siamedge.secret_files import drop_line_end, read_secret
from siamedge.tls import settings_context


def resolve_password(settings: MqttSettings) -> str | None:
    """The password from `password_file` (one trailing newline dropped) or `password_env`.

    None when neither is set; ConfigError naming the key and the file or variable when it is
    missing, unreadable or empty.
    """
    return read_secret(
        "mqtt.password_file",
        settings.password_file,
        "mqtt.password_env",
        settings.password_env,
        clean_file=drop_line_end,
    )


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho 2.2 drops such a socket unclosed, which
    leaks a descriptor until garbage collection on every failed TLS reconnect."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(settings: TlsSettings) -> ssl.SSLContext:
    """The broker's TLS context from mqtt.tls (siamedge.tls.settings_context), its sockets
    closing themselves on a failed handshake."""
    context = settings_context(settings, "mqtt.tls")
    context.sslsocket_class = _ClosingSSLSocket
    return context
