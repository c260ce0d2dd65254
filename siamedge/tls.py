"""Client TLS contexts that verify the same certificates on every Python siamedge runs on, built
from a `tls` settings section (mqtt.tls: the broker; source.tls: an https camera)."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from siamedge.config import TlsSettings
from siamedge.errors import ConfigError

# OpenSSL's X509_V_ERR_* codes, by what to do about them.
_NAME_MISMATCH_CODES = (62, 64)  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_DATE_CODES = (9, 10)  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
_UNTRUSTED_CODES = (2, 18, 19, 20, 21)
"""UNABLE_TO_GET_ISSUER_CERT, DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN,
UNABLE_TO_GET_ISSUER_CERT_LOCALLY, UNABLE_TO_VERIFY_LEAF_SIGNATURE: no trusted CA."""


def client_context(ca_file: str | None = None, *, x509_strict: bool = False) -> ssl.SSLContext:
    """ssl.create_default_context(cafile=ca_file) (the system store when None) with OpenSSL's
    RFC 5280 check (VERIFY_X509_STRICT) set from x509_strict: Python 3.13 turns it on by default,
    3.10-3.12 leave it off, so a CA without key usage (as mosquitto's TLS manual and many
    cameras make it) would be refused on one Python and accepted on another.

    OSError or ssl.SSLError when ca_file cannot be loaded."""
    context = ssl.create_default_context(cafile=ca_file)
    if x509_strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    else:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def settings_context(settings: TlsSettings, key: str) -> ssl.SSLContext:
    """A client context from a `tls` section: the server verified against `ca_file` (or the
    system CAs), an optional client certificate, the host name check off only when `insecure`
    is set, OpenSSL's RFC 5280 checks only when `x509_strict` is. ConfigError naming
    `<key>.<field>` and the file when one cannot be loaded."""
    if settings.key_file and not settings.cert_file:
        raise ConfigError(f"{key}.key_file is set without {key}.cert_file")
    try:
        context = client_context(settings.ca_file, x509_strict=settings.x509_strict)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{key}.ca_file: cannot load {settings.ca_file}: {exc}") from None
    if settings.cert_file:

        def refuse_key_password() -> bytes:
            # OpenSSL would otherwise prompt on a terminal that a daemon does not have.
            raise ConfigError(
                f"{key}.key_file: the key is encrypted; siamedge needs an unencrypted key"
            )

        try:
            context.load_cert_chain(
                settings.cert_file, settings.key_file, password=refuse_key_password
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{key}.cert_file/key_file: cannot load {settings.cert_file}"
                f"{' and ' + settings.key_file if settings.key_file else ''}: {exc}"
            ) from None
    context.check_hostname = not settings.insecure
    return context


@dataclass(frozen=True)
class ClientTls:
    """A client's TLS context with the settings section it came from, which the advice for a
    certificate that does not verify names."""

    context: ssl.SSLContext
    key: str
    """The settings section, `source.tls`."""
    ca_file: str | None = None
    x509_strict: bool = False
    client_certificate: bool = False

    @classmethod
    def from_settings(cls, settings: TlsSettings | None, key: str) -> ClientTls:
        """The section's context, or the system store's when the section is not set."""
        if settings is None:
            return cls(client_context(), key)
        context = settings_context(settings, key)
        certificate = settings.cert_file is not None
        return cls(context, key, settings.ca_file, settings.x509_strict, certificate)

    def failure(self, exc: ssl.SSLError | ConnectionResetError) -> str:
        """What a TLS error (or a reset) of this client's connection says, and what to do."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self.verify_failure(exc)
        if isinstance(exc, ConnectionResetError):
            reason = exc.strerror or str(exc)
        else:
            reason = handshake_failure(exc)
            if getattr(exc, "reason", None) == "WRONG_VERSION_NUMBER":
                return f"{reason}; the server does not answer TLS on that port (an http:// URL?)"
        certificate = f"set {self.key}.cert_file and key_file"
        if getattr(exc, "reason", None) == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
            return f"{reason}; the server asks for a client certificate: {certificate}"
        if isinstance(exc, ssl.SSLEOFError | ConnectionResetError) and not self.client_certificate:
            # TLS 1.3: a server refusing a client without a certificate may close before its
            # alert is read (the request it had not read makes the close a reset).
            return (
                f"{reason}; the server closed the connection: if it asks for a client "
                f"certificate, {certificate}"
            )
        return reason

    def verify_failure(self, exc: ssl.SSLCertVerificationError, now: float | None = None) -> str:
        """Why a server's certificate did not verify, in OpenSSL's words, and what to do about
        it (now: unix seconds, for a certificate out of its dates; default the clock's)."""
        reason = handshake_failure(exc)
        code = exc.verify_code
        if code in _NAME_MISMATCH_CODES:
            advice = (
                "the certificate does not name the host of the URL: use a name it names, or "
                f"set {self.key}.insecure: true to skip the name check"
            )
        elif code in _DATE_CODES:
            clock = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
            advice = (
                f"this board's clock says {clock}: is it set (timedatectl; a board without a "
                "battery clock starts in the past until NTP syncs)? If it is, the server's "
                "certificate needs renewing"
            )
        elif code in _UNTRUSTED_CODES and self.ca_file is None:
            advice = (
                "the server's certificate must chain to a CA of the system store (add it with "
                f"update-ca-certificates) or to {self.key}.ca_file (the certificate itself "
                "when the server signs its own)"
            )
        elif code in _UNTRUSTED_CODES:
            advice = (
                f"the server's certificate must chain to {self.key}.ca_file {self.ca_file} (or "
                "be in it, when the server signs its own)"
            )
        elif self.x509_strict:
            advice = (
                f"{self.key}.x509_strict is on: a certificate that breaks RFC 5280 is refused "
                "even when it chains to a trusted CA (x509_strict: false accepts it)"
            )
        else:
            return reason
        return f"{reason}; {advice}"


def handshake_failure(exc: ssl.SSLError) -> str:
    """What went wrong in a TLS handshake, in OpenSSL's words: for a certificate that does not
    verify, why (`certificate verify failed: self-signed certificate`), not only the code."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(getattr(exc, "reason", None) or exc)
