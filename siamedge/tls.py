"""Client TLS contexts that verify the same certificates on every Python siamedge runs on."""

from __future__ import annotations

import ssl

SYSTEM_CA_HINT = (
    "the server's certificate must chain to a CA of the system store "
    "(add it with update-ca-certificates, or point SSL_CERT_FILE at a PEM file of it)"
)


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


def handshake_failure(exc: ssl.SSLError) -> str:
    """What went wrong in a TLS handshake, in OpenSSL's words: for a certificate that does not
    verify, why (`certificate verify failed: self-signed certificate`), not only the code."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc)
