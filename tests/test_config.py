"""Configuration files: the shipped examples validate; every mistake names the key and the file."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from siamedge.config import Settings, load_settings, settings_from_mapping
from siamedge.errors import ConfigError
from siamedge.messaging.topics import Topics


@pytest.mark.parametrize("name", ["siamedge.yaml", "demo.yaml"])
def test_shipped_configs_validate(repo_root: Path, name: str) -> None:
    settings = load_settings(repo_root / "config" / name)
    assert isinstance(settings, Settings)


def test_demo_config_is_builtin_model_on_synthetic_source(repo_root: Path) -> None:
    settings = load_settings(repo_root / "config" / "demo.yaml")
    assert settings.model.path == "builtin"
    assert settings.source.uri == "synthetic"


def test_no_file_gives_embedded_defaults() -> None:
    settings = load_settings(None)
    assert settings.model.path == "builtin"
    assert settings.mqtt.port == 1883
    assert settings.tracker.max_tracks == 4


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_settings(path) == Settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt:\n  prot: 1883\n", r"bad\.yaml: mqtt\.prot: Extra inputs are not permitted"),
        ("sourse:\n  uri: x\n", r"bad\.yaml: sourse: Extra inputs are not permitted"),
        ("mqtt:\n  port: http\n", r"mqtt\.port: Input should be a valid integer"),
        ("mqtt:\n  port: 70000\n", r"mqtt\.port: Input should be less than or equal to 65535"),
        ("tracker:\n  seg_thr: 1.5\n", r"tracker\.seg_thr: Input should be less than 1"),
        (
            "model:\n  trt_workspace_mb: -1\n",
            r"model\.trt_workspace_mb: Input should be greater than or equal to 0",
        ),
        (
            "model:\n  providers: [gpu]\n",
            r"bad\.yaml: model\.providers: Value error, must be auto or a list of tensorrt, cuda, "
            r"cpu in order of preference, got \['gpu'\]$",
        ),
        ("mqtt:\n  topic_prefix: 'a/+/'\n", r"mqtt\.topic_prefix: Value error"),
        (
            "mqtt:\n  password_file: /a\n  password_env: B\n",
            r"mqtt: Value error, set password_file or password_env, not both",
        ),
        ("source:\n  reopen_min_s: 5\n  reopen_max_s: 1\n", r"reopen_max_s must be >="),
        (
            "mqtt:\n  reconnect_min_s: 60\n",
            r"bad\.yaml: mqtt: Value error, reconnect_max_s must be >= reconnect_min_s, "
            r"got 30 < 60$",
        ),
        ("model:\n  trt_dla_enable: true\n", r"model: Value error, trt_dla_enable needs trt_fp16"),
        # A key only another kind reads would be ignored without a word (software decoding).
        (
            "source:\n  uri: rtsp://cam/x\n  decoder: nvv4l2decoder\n",
            r"source: Value error, source\.decoder set, but used by source\.kind rtsp only "
            r"\(source\.kind is auto\): set source\.kind: rtsp, or leave it out",
        ),
        (
            "source:\n  kind: csi\n  latency_ms: 50\n  transport: udp\n",
            r"source\.latency_ms, source\.transport set, .* is csi\): .* leave them out",
        ),
        ("source:\n  uri: /dev/video1\n  flip: 2\n", r"source\.flip set, .*set source\.kind: csi"),
        # nvarguscamerasrc takes sensor-id and sensor-mode up to 255 (and camera 0 otherwise).
        (
            "source:\n  kind: csi\n  sensor_id: 256\n",
            r"source\.sensor_id: Input should be less than or equal to 255$",
        ),
        # source.tls is for what siamedge reads itself over https; FFmpeg would ignore it.
        (
            "source:\n  uri: http://cam/video.mjpg\n  tls: {insecure: true}\n",
            r"bad\.yaml: source: Value error, source\.tls is set but source\.uri is not an "
            r"https:// URL$",
        ),
        (
            "source:\n  kind: stream\n  uri: https://cam/live.m3u8\n  tls: {ca_file: /c.pem}\n",
            r"source\.tls applies to kind mjpeg or auto; kind stream is read by FFmpeg, which "
            r"does its own TLS: give it the CA with OPENCV_FFMPEG_CAPTURE_OPTIONS=ca_file;PATH\|"
            r"tls_verify;1 in the service environment",
        ),
        (
            "source:\n  uri: https://cam/video.mjpg\n  tls: {ca_fle: /c.pem}\n",
            r"bad\.yaml: source\.tls\.ca_fle: Extra inputs are not permitted$",
        ),
        # Loaded, these failed at every open of the clip, retried for ever: numpy refuses a
        # negative seed (without naming the key); 100000 x 100000 asks for hundreds of GB.
        (
            "source:\n  synthetic:\n    seed: -1\n",
            r"bad\.yaml: source\.synthetic\.seed: Input should be greater than or equal to 0$",
        ),
        (
            "source:\n  synthetic:\n    width: 100000\n    height: 100000\n",
            r"source\.synthetic\.width: Input should be less than or equal to 7680; "
            r"source\.synthetic\.height: Input should be less than or equal to 4320$",
        ),
        (
            "source:\n  synthetic:\n    width: 7681\n",
            r"bad\.yaml: source\.synthetic\.width: Input should be less than or equal to 7680$",
        ),
        (
            "source:\n  synthetic:\n    height: 4321\n",
            r"bad\.yaml: source\.synthetic\.height: Input should be less than or equal to 4320$",
        ),
        ("- just\n- a list\n", r"bad\.yaml: the top level must be a mapping"),
        ("mqtt: [\n", r"bad\.yaml: not valid YAML"),
    ],
)
def test_mistakes_name_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_a_yaml_mistake_is_one_line_with_its_place_in_the_file(tmp_path: Path) -> None:
    # PyYAML's text spans lines and points into "<unicode string>", not the file.
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  host: broker\n\tport: 1883\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value) == (
        f"{path}: not valid YAML: line 3, column 1: while scanning for the next token; "
        "found character '\\t' that cannot start any token"
    )


@pytest.mark.parametrize("text", ["", "# every key commented out\n# mqtt:\n"])
def test_a_file_without_settings_runs_on_the_defaults_with_a_warning(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "siamedge.yaml"
    path.write_text(text)
    assert load_settings(path) == Settings()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{path} holds no settings: running on the defaults"
    ]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the configuration"):
        load_settings(tmp_path / "missing.yaml")


def test_topic_prefix_gets_a_trailing_slash() -> None:
    settings = Settings.model_validate({"mqtt": {"topic_prefix": "siamedge/cam-01"}})
    assert settings.mqtt.topic_prefix == "siamedge/cam-01/"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.mqtt.port = 1  # type: ignore[misc]


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The settings section an annotation holds (`X` or `X | None`), None for a plain value."""
    for candidate in (annotation, *get_args(annotation)):
        # get_origin: on Python 3.10 `list[str]` passes isinstance(_, type), not issubclass()
        is_class = isinstance(candidate, type) and get_origin(candidate) is None
        if is_class and issubclass(candidate, BaseModel):
            return candidate
    return None


def _undocumented(section: type[BaseModel], data: Any, text: str, prefix: str) -> list[str]:
    """Keys of `section` that the YAML `data` (parsed) neither sets nor, for a section set to
    null, names in a comment of the file's `text`."""
    missing = []
    for name, field in section.model_fields.items():
        key = f"{prefix}{name}"
        if not isinstance(data, dict) or name not in data:
            missing.append(key)
            continue
        inner = _section_model(field.annotation)
        if inner is None:
            continue
        if isinstance(data[name], dict):
            missing += _undocumented(inner, data[name], text, f"{key}.")
        else:
            missing += [f"{key}.{sub}" for sub in inner.model_fields if f"{sub}:" not in text]
    return missing


def test_the_usb_camera_config_documents_every_key(repo_root: Path) -> None:
    text = (repo_root / "config" / "siamedge.yaml").read_text("utf-8")
    assert _undocumented(Settings, yaml.safe_load(text), text, "") == []


# Each of these loaded and then broke the daemon: a traceback from paho (empty host, a keepalive
# or client id over MQTT's 16 bits), a broker that drops every connection (NUL and control
# characters), or a thread dying of OverflowError (durations past threading.TIMEOUT_MAX).
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "mqtt:\n  host: ''\n",
            "mqtt.host: Value error, must be the broker's host name or address, without spaces "
            "or control characters, got ''",
        ),
        (
            "mqtt:\n  host: '  '\n",
            "mqtt.host: Value error, must be the broker's host name or address, without spaces "
            "or control characters, got '  '",
        ),
        (
            "mqtt:\n  host: mqtt://broker.local\n",
            "mqtt.host: Value error, must be the host alone, without a scheme (mqtt://), a path "
            "or a port (give it in mqtt.port), got 'mqtt://broker.local'",
        ),
        (
            "mqtt:\n  host: 127.0.0.1:1884\n",
            "mqtt.host: Value error, must be the host alone, without a scheme (mqtt://), a path "
            "or a port (give it in mqtt.port), got '127.0.0.1:1884'",
        ),
        # An empty listen host bound every interface without a word (and the URL had no host).
        (
            "web:\n  host: ''\n",
            "web.host: Value error, must be a host name or address to listen on (0.0.0.0 or :: "
            "for every interface), got ''",
        ),
        (
            "metrics:\n  host: ' '\n",
            "metrics.host: Value error, must be a host name or address to listen on (0.0.0.0 or "
            ":: for every interface), got ' '",
        ),
        (
            "mqtt:\n  keepalive_s: 200000\n",
            "mqtt.keepalive_s: Value error, must be at most 65535 s (MQTT's limit: the keep "
            "alive is a 16-bit field), got 200000",
        ),
        (
            'mqtt:\n  client_id: "cam\\0one"\n',
            "mqtt.client_id: Value error, 'cam\\x00one' holds NUL, U+0000 (character 4): MQTT "
            "strings may not hold NUL, control characters or non-characters (MQTT 5 spec "
            "1.5.4; the broker drops the connection)",
        ),
        (
            f"mqtt:\n  client_id: {'c' * 65536}\n",
            f"mqtt.client_id: Value error, {'c' * 40!r}... (65536 characters) is 65536 bytes in "
            "UTF-8, over the 65535 an MQTT string holds (MQTT 5 spec 1.5.4)",
        ),
        (
            f"mqtt:\n  client_id: {'é' * 32768}\n",  # 32768 characters, 65536 bytes
            f"mqtt.client_id: Value error, {'é' * 40!r}... (32768 characters) is 65536 bytes in "
            "UTF-8, over the 65535 an MQTT string holds (MQTT 5 spec 1.5.4)",
        ),
        (
            'mqtt:\n  username: "op\\x01"\n',
            "mqtt.username: Value error, 'op\\x01' holds a control character, U+0001 (character "
            "3): MQTT strings may not hold NUL, control characters or non-characters (MQTT 5 "
            "spec 1.5.4; the broker drops the connection)",
        ),
        (
            f"mqtt:\n  username: {'u' * 65536}\n",
            f"mqtt.username: Value error, {'u' * 40!r}... (65536 characters) is 65536 bytes in "
            "UTF-8, over the 65535 an MQTT string holds (MQTT 5 spec 1.5.4)",
        ),
        (
            'mqtt:\n  topic_prefix: "site\\x85/"\n',
            "mqtt.topic_prefix: Value error, 'site\\x85/' holds a control character, U+0085 "
            "(character 5): MQTT strings may not hold NUL, control characters or "
            "non-characters (MQTT 5 spec 1.5.4; the broker drops the connection)",
        ),
        (
            # with `/` and `track/results` one byte over MQTT's 65535
            f"mqtt:\n  topic_prefix: {'p' * 65522}\n",
            f"mqtt.topic_prefix: Value error, {'p' * 40!r}... (65523 characters) is 65523 bytes "
            "in UTF-8: with the 13 of the longest topic under it, over the 65535 an MQTT topic "
            "holds",
        ),
        (
            'mqtt:\n  homeassistant:\n    discovery_prefix: "ha\\uFFFF"\n',
            "mqtt.homeassistant.discovery_prefix: Value error, 'ha\\uffff' holds a "
            "non-character, U+FFFF (character 3): MQTT strings may not hold NUL, control "
            "characters or non-characters (MQTT 5 spec 1.5.4; the broker drops the connection)",
        ),
        (
            "source:\n  read_timeout_s: 1e10\n",
            "source.read_timeout_s: Value error, must be at most 86400 s (a day), "
            "got 10000000000.0",
        ),
        (
            "source:\n  fps: 1e-11\n",
            "source.fps: Value error, must be at least 1/86400 a second (once a day), got 1e-11",
        ),
        (
            "source:\n  reopen_min_s: 1e10\n  reopen_max_s: 1e10\n",
            "source.reopen_min_s: Value error, must be at most 86400 s (a day), got "
            "10000000000.0; source.reopen_max_s: Value error, must be at most 86400 s (a day), "
            "got 10000000000.0",
        ),
        (
            "source:\n  kind: rtsp\n  uri: rtsp://cam/x\n  latency_ms: 5000000000\n",
            "source.latency_ms: Value error, must be at most 86400000 ms (a day), got 5000000000",
        ),
        (
            "web:\n  preview_fps: 1e-11\n",
            "web.preview_fps: Value error, must be at least 1/86400 a second (once a day), "
            "got 1e-11",
        ),
    ],
)
def test_values_that_broke_the_daemon_are_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value) == f"{path}: {message}"


def test_the_limits_themselves_load(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(
        "source:\n  fps: 1.1574074074074073e-05\n  read_timeout_s: 86400\n"
        "  reopen_min_s: 86400\n  reopen_max_s: 86400\n"
        f"mqtt:\n  host: '::1'\n  keepalive_s: 65535\n  client_id: {'é' * 32767}x\n"
        f"  username: 'Zoë 🐈'\n  topic_prefix: {'p' * 65521}\n"
        "web:\n  request_timeout_s: 86400\n  preview_fps: 1.1574074074074073e-05\n",
        encoding="utf-8",
    )
    settings = load_settings(path)
    topics = Topics.for_prefix(settings.mqtt.topic_prefix).all()

    assert settings.mqtt.keepalive_s == 65535
    assert len(str(settings.mqtt.client_id).encode("utf-8")) == 65535
    assert max(len(topic.encode("utf-8")) for topic in topics) == 65535
    assert settings.source.read_timeout_s == 86400
    assert settings.source.fps == 1 / 86400


def _plain(annotation: Any) -> Any:
    """`X` for `Annotated[X, ...]`, else the annotation itself."""
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _number_keys(section: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of a number field below `section`, dotted."""
    keys = []
    for name, field in section.model_fields.items():
        inner = _section_model(field.annotation)
        if inner is not None:
            keys += _number_keys(inner, f"{prefix}{name}.")
        elif {int, float} & {
            _plain(kind) for kind in (field.annotation, *get_args(field.annotation))
        }:
            keys.append(f"{prefix}{name}")
    return keys


RATE_KEYS = [key for key in _number_keys(Settings) if key.endswith(("fps", "_per_s"))]
DURATION_KEYS = [
    key for key in _number_keys(Settings) if key.endswith(("_s", "_ms")) and key not in RATE_KEYS
]


def test_every_duration_and_rate_is_found() -> None:
    assert RATE_KEYS == ["source.fps", "mqtt.error_replies_per_s", "web.preview_fps"]
    assert DURATION_KEYS == [
        "source.reopen_min_s",
        "source.reopen_max_s",
        "source.open_timeout_s",
        "source.read_timeout_s",
        "source.latency_ms",
        "mqtt.keepalive_s",
        "mqtt.reconnect_min_s",
        "mqtt.reconnect_max_s",
        "mqtt.status_interval_s",
        "mqtt.session_expiry_s",
        "mqtt.command_max_age_s",
        "mqtt.command_clock_skew_s",
        "service.watchdog_stall_s",
        "service.model_retry_s",
        "web.request_timeout_s",
        "web.command_timeout_s",
    ]


@pytest.mark.parametrize("key", DURATION_KEYS + RATE_KEYS)
def test_no_duration_or_rate_can_overflow_a_wait(key: str) -> None:
    """A wait past threading.TIMEOUT_MAX (about 9.2e9 s) raises OverflowError in its thread:
    every duration is refused well below it, and every rate well above its inverse."""
    section, name = key.rsplit(".", maxsplit=1)
    seconds = 10 * threading.TIMEOUT_MAX
    value = 1 / seconds if key in RATE_KEYS else seconds * (1000 if name.endswith("_ms") else 1)
    data: dict[str, Any] = {name: value}
    for part in reversed(section.split(".")):
        data = {part: data}
    with pytest.raises(ConfigError, match=rf"^x\.yaml: {re.escape(key)}: [^;\n]*$"):
        settings_from_mapping(data, "x.yaml")
