"""Passwords come from a file or an environment variable; TLS files are checked up front."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from fixtures.mosquitto import TlsFiles

from siamedge.config import MqttSettings, TlsSettings, settings_from_mapping
from siamedge.errors import ConfigError
from siamedge.messaging.credentials import resolve_password, tls_context


def test_password_file_drops_one_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(" pass word \n", encoding="utf-8")
    settings = MqttSettings(username="u", password_file=str(secret))
    assert resolve_password(settings) == " pass word "


def test_password_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIAMEDGE_TEST_PW", "from-env")
    assert resolve_password(MqttSettings(username="u", password_env="SIAMEDGE_TEST_PW")) == (
        "from-env"
    )


def test_no_password_source_means_no_password() -> None:
    assert resolve_password(MqttSettings(username="u")) is None


def test_missing_password_file_names_the_key_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=rf"mqtt.password_file: cannot read {missing}"):
        resolve_password(MqttSettings(username="u", password_file=str(missing)))


def test_empty_password_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_password(MqttSettings(username="u", password_file=str(empty)))


def test_missing_password_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIAMEDGE_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="environment variable SIAMEDGE_TEST_UNSET is not set"):
        resolve_password(MqttSettings(username="u", password_env="SIAMEDGE_TEST_UNSET"))


def test_password_needs_a_username() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.password_env needs mqtt\.username"):
        settings_from_mapping({"mqtt": {"password_env": "X"}}, "test.yaml")


def test_tls_context_checks_the_host_name_unless_insecure(mqtt_tls_files: TlsFiles) -> None:
    files = mqtt_tls_files
    secure = tls_context(TlsSettings(ca_file=str(files.ca_cert)))
    assert secure.check_hostname
    insecure = tls_context(TlsSettings(ca_file=str(files.ca_cert), insecure=True))
    assert not insecure.check_hostname


@pytest.mark.usefixtures("tls_default_of_python_3_13")
def test_tls_context_checks_rfc_5280_only_when_x509_strict(mqtt_tls_files: TlsFiles) -> None:
    # siamedge sets the check either way, whatever Python's default.
    ca_file = str(mqtt_tls_files.ca_cert)
    assert not tls_context(TlsSettings(ca_file=ca_file)).verify_flags & ssl.VERIFY_X509_STRICT
    strict = tls_context(TlsSettings(ca_file=ca_file, x509_strict=True))
    assert strict.verify_flags & ssl.VERIFY_X509_STRICT


@pytest.mark.parametrize(
    ("field", "message"),
    [("ca_file", "mqtt.tls.ca_file: cannot load"), ("cert_file", "cannot load")],
)
def test_missing_tls_files_are_config_errors(tmp_path: Path, field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tls_context(TlsSettings(**{field: str(tmp_path / "missing.pem")}))


def test_key_without_certificate_is_a_config_error(mqtt_tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match=r"key_file is set without mqtt\.tls\.cert_file"):
        tls_context(TlsSettings(key_file=str(mqtt_tls_files.client_key)))


def test_encrypted_key_is_refused_instead_of_prompting(
    mqtt_tls_files: TlsFiles, tmp_path: Path
) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(mqtt_tls_files.client_key), "-aes256",
         "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="the key is encrypted"):
        tls_context(TlsSettings(cert_file=str(mqtt_tls_files.client_cert), key_file=str(encrypted)))
