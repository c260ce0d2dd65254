"""What a certificate that does not verify is told with: OpenSSL's reason and what to do."""

from __future__ import annotations

import calendar
import ssl

import pytest

from siamedge.config import TlsSettings
from siamedge.tls import ClientTls

NOW = calendar.timegm((2026, 3, 1, 12, 30, 0))


def refused(code: int, message: str) -> ssl.SSLCertVerificationError:
    """The error OpenSSL's verification raises, as the ssl module fills it in."""
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("code", "message"), [(10, "certificate has expired"), (9, "certificate is not yet valid")]
)
def test_a_certificate_out_of_its_dates_asks_after_the_boards_clock(
    code: int, message: str
) -> None:
    # A board without a battery clock boots in the past: the camera's certificate is then
    # "not yet valid", and no CA file would help.
    tls = ClientTls.from_settings(TlsSettings(ca_file=None), "source.tls")
    assert tls.verify_failure(refused(code, message), now=NOW) == (
        f"certificate verify failed: {message}; this board's clock says 2026-03-01 12:30 UTC: "
        "is it set (timedatectl; a board without a battery clock starts in the past until NTP "
        "syncs)? If it is, the server's certificate needs renewing"
    )


def test_other_failures_name_x509_strict_when_it_is_on_and_nothing_more_otherwise() -> None:
    exc = refused(88, "Basic Constraints of CA cert not marked critical")
    strict = ClientTls.from_settings(TlsSettings(x509_strict=True), "source.tls")
    assert strict.verify_failure(exc) == (
        "certificate verify failed: Basic Constraints of CA cert not marked critical; "
        "source.tls.x509_strict is on: a certificate that breaks RFC 5280 is refused even when "
        "it chains to a trusted CA (x509_strict: false accepts it)"
    )
    lax = ClientTls.from_settings(None, "source.tls")
    signature = refused(7, "certificate signature failure")
    assert (
        lax.verify_failure(signature) == "certificate verify failed: certificate signature failure"
    )


def test_a_server_closing_after_the_handshake_points_at_a_client_certificate() -> None:
    # TLS 1.3: a server refusing a client without a certificate may close before its alert is
    # read; the client sees an EOF, or a reset when its request was still unread.
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)")
    reset = ConnectionResetError(104, "Connection reset by peer")
    without = ClientTls.from_settings(None, "source.tls")
    advice = (
        "; the server closed the connection: if it asks for a client certificate, set "
        "source.tls.cert_file and key_file"
    )
    assert without.failure(eof) == f"{eof}{advice}"
    assert without.failure(reset) == f"Connection reset by peer{advice}"
    with_one = ClientTls(without.context, "source.tls", client_certificate=True)
    assert with_one.failure(reset) == "Connection reset by peer"
