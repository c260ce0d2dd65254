"""Configuration files: the shipped examples validate; every mistake names the key and the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from siamedge.config import Settings, load_settings
from siamedge.errors import ConfigError


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
        ("model:\n  providers: [gpu]\n", r"model\.providers"),
        ("mqtt:\n  topic_prefix: 'a/+/'\n", r"mqtt\.topic_prefix: Value error"),
        (
            "mqtt:\n  password_file: /a\n  password_env: B\n",
            r"mqtt: Value error, set password_file or password_env, not both",
        ),
        ("source:\n  reopen_min_s: 5\n  reopen_max_s: 1\n", r"reopen_max_s must be >="),
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
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
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
