"""Broker credentials from the settings: the password (file or environment) and the TLS context.

Reads only the files and variables the settings name; never logs a password or takes it from YAML.
"""

from __future__ import annotations

import ssl

from siamedge.config import MqttSettings, TlsSettings
from siamedge.errors import ConfigError
from siamedge.secret_files import read_secret
from siamedge.tls import client_context


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
        clean_file=lambda text: text.removesuffix("\n").removesuffix("\r"),
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


def _refuse_key_password() -> bytes:
    # OpenSSL would otherwise prompt on a terminal that a daemon does not have.
    raise ConfigError("mqtt.tls.key_file: the key is encrypted; siamedge needs an unencrypted key")


def tls_context(settings: TlsSettings) -> ssl.SSLContext:
    """A client TLS context: the broker verified against `ca_file` (or the system CAs), an
    optional client certificate, the host name check off only when `insecure` is set, and
    OpenSSL's RFC 5280 checks only when `x509_strict` is."""
    if settings.key_file and not settings.cert_file:
        raise ConfigError("mqtt.tls.key_file is set without mqtt.tls.cert_file")
    try:
        context = client_context(settings.ca_file, x509_strict=settings.x509_strict)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls.ca_file: cannot load {settings.ca_file}: {exc}") from None
    if settings.cert_file:
        try:
            context.load_cert_chain(
                settings.cert_file, settings.key_file, password=_refuse_key_password
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"mqtt.tls.cert_file/key_file: cannot load {settings.cert_file}"
                f"{' and ' + settings.key_file if settings.key_file else ''}: {exc}"
            ) from None
    context.check_hostname = not settings.insecure
    context.sslsocket_class = _ClosingSSLSocket
    return context
