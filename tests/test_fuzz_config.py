"""Property-based fuzzing of the configuration: random YAML for every section either loads into
settings the daemon can use (all numbers finite, every wait within what a thread can wait, the
MQTT values within MQTT's limits) or raises ConfigError naming the file and the key; nothing else.

Seeded (derandomize) and bounded, so CI runs the same examples every time.
"""

from __future__ import annotations

import math
import re
import threading
from pathlib import Path
from typing import Any, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from siamedge.config import (
    HomeAssistantSettings,
    MetricsSettings,
    ModelSettings,
    MqttSettings,
    ServiceSettings,
    Settings,
    SourceSettings,
    SyntheticSettings,
    TlsSettings,
    TrackerSettings,
    WebSettings,
    load_settings,
)
from siamedge.errors import ConfigError

FUZZ = settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
SECTIONS: dict[str, type[BaseModel]] = {
    "model": ModelSettings,
    "tracker": TrackerSettings,
    "source": SourceSettings,
    "source.synthetic": SyntheticSettings,
    "source.tls": TlsSettings,
    "mqtt": MqttSettings,
    "mqtt.tls": TlsSettings,
    "mqtt.homeassistant": HomeAssistantSettings,
    "service": ServiceSettings,
    "web": WebSettings,
    "metrics": MetricsSettings,
}

TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN, infinities, -0.0
    st.floats(min_value=-10, max_value=100),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    TEXT,
    st.sampled_from(["", "auto", "cpu", "5", "3.1.1", "rle", "INFO", "*", "synthetic", "yes"]),
    st.binary(max_size=8),  # !!binary
)
YAML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


def _near(default: Any) -> st.SearchStrategy[Any]:
    """Values of the default's type around it, so that many mappings load."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.one_of(st.integers(-2, 2 * default + 10), st.just(default))
    if isinstance(default, float):
        return st.one_of(st.floats(-1.0, 2 * default + 1.0), st.just(default))
    if isinstance(default, str):
        return st.one_of(st.just(default), TEXT)
    return YAML_VALUES


@st.composite
def section_mappings(draw: st.DrawFn, section: type[BaseModel]) -> dict[str, Any]:
    """Some of the section's keys with values near their defaults or anything at all, and now
    and then a key the section does not have."""
    names = sorted(section.model_fields)
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    mapping: dict[str, Any] = {}
    for name in chosen:
        default = section.model_fields[name].default
        mapping[name] = draw(st.one_of(_near(default), _near(default), YAML_VALUES))
    if draw(st.integers(0, 5)) == 0:
        mapping[draw(TEXT.filter(lambda key: key.strip() != ""))] = draw(YAML_VALUES)
    return mapping


SECTION_NEEDS: dict[str, dict[str, Any]] = {"source.tls": {"uri": "https://cam/video.mjpg"}}
"""What the section above a section needs for it to apply (source.tls: an https:// uri)."""


def nest(path: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """`{"source": {"synthetic": mapping}}` for `source.synthetic`."""
    document: dict[str, Any] = mapping
    for part in reversed(path.split(".")):
        document = {part: document}
    parent = path.rpartition(".")[0]
    if needs := SECTION_NEEDS.get(path):
        nest_in = document
        for part in parent.split("."):
            nest_in = nest_in[part]
        nest_in.update(needs)
    return document


def finite_numbers(value: Any) -> bool:
    """Whether every float in loaded settings is finite."""
    if isinstance(value, BaseModel):
        return all(finite_numbers(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, list | tuple):
        return all(finite_numbers(item) for item in value)
    return not isinstance(value, float) or math.isfinite(value)


def waitable(value: Any) -> bool:
    """Whether every duration (`*_s`, `*_ms`) in loaded settings, and the period of every rate
    (`*fps`, `*_per_s`), fits a thread's wait: more raises OverflowError in the waiting thread."""
    if not isinstance(value, BaseModel):
        return True
    for name in type(value).model_fields:
        number = getattr(value, name)
        if isinstance(number, bool) or not isinstance(number, int | float):
            if not waitable(number):
                return False
            continue
        if name.endswith(("fps", "_per_s")):
            seconds = 1 / number
        else:
            seconds = number / 1000 if name.endswith("_ms") else number
        if name.endswith(("fps", "_s", "_ms")) and seconds > threading.TIMEOUT_MAX:
            return False
    return True


def _mqtt_string(text: str | None) -> bool:
    """MQTT 5 spec 1.5.4: at most 65535 bytes of UTF-8; mosquitto drops a connection whose
    strings hold NUL, control characters or non-characters."""
    if text is None:
        return True
    bad = [
        code
        for code in map(ord, text)
        if code <= 0x1F
        or 0x7F <= code <= 0x9F
        or 0xFDD0 <= code <= 0xFDEF
        or code & 0xFFFE == 0xFFFE
    ]
    return not bad and len(text.encode("utf-8")) <= 65535


def sendable(settings: Settings) -> bool:
    """Whether the MQTT settings go through paho and the broker: a host, a 16-bit keepalive,
    MQTT strings."""
    mqtt = settings.mqtt
    return (
        mqtt.host.strip() != ""
        and mqtt.keepalive_s <= 65535
        and all(
            _mqtt_string(text)
            for text in (
                mqtt.client_id,
                mqtt.username,
                mqtt.topic_prefix,
                mqtt.homeassistant.discovery_prefix,
            )
        )
    )


def usable(settings: Settings) -> bool:
    return finite_numbers(settings) and waitable(settings) and sendable(settings)


def load_or_error(path: Path) -> Settings | ConfigError:
    try:
        return load_settings(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        return exc


def test_the_fuzzed_sections_are_every_section() -> None:
    def walk(model: type[BaseModel], prefix: str) -> set[str]:
        found: set[str] = set()
        for name, field in model.model_fields.items():
            kinds = [field.annotation, *getattr(field.annotation, "__args__", ())]
            for kind in kinds:
                # get_origin: on Python 3.10 `list[str]` passes isinstance(_, type)
                if (
                    isinstance(kind, type)
                    and get_origin(kind) is None
                    and issubclass(kind, BaseModel)
                ):
                    found |= {f"{prefix}{name}"} | walk(kind, f"{prefix}{name}.")
        return found

    assert walk(Settings, "") == set(SECTIONS)


@pytest.mark.parametrize("section", sorted(SECTIONS))
@FUZZ
@given(data=st.data())
def test_a_random_section_loads_or_raises_config_error_naming_the_key_and_file(
    section: str, data: st.DataObject, tmp_path: Path
) -> None:
    mapping = data.draw(section_mappings(SECTIONS[section]), label="mapping")
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(nest(section, mapping), allow_unicode=True), encoding="utf-8")
    outcome = load_or_error(path)
    if isinstance(outcome, Settings):
        assert usable(outcome)
        return
    message = str(outcome)
    # every problem names its place: the section, and a key that was given in it
    assert section.split(".", maxsplit=1)[0] in message, message
    assert any(repr(key) in message or key in message for key in mapping), message


@st.composite
def yaml_files(draw: st.DrawFn) -> bytes:
    """Whole files: YAML text, bytes that are not UTF-8, tags, aliases, huge numbers, deep
    nesting."""
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return draw(st.binary(max_size=100))
    if shape == 1:
        return yaml.safe_dump(draw(YAML_VALUES), allow_unicode=True).encode()
    if shape == 2:
        section = draw(st.sampled_from(sorted(SECTIONS)))
        key = draw(st.sampled_from(sorted(SECTIONS[section].model_fields)))
        value = draw(
            st.sampled_from(
                [
                    "9" * 5000,
                    "1e400",
                    ".nan",
                    "-.inf",
                    "!!binary AAAA",
                    "!!python/object:os.system {}",
                    "!!timestamp 2001-13-45",
                    "&a [*a]",
                    "*undefined",
                    '"\\ud800"',
                    "{",
                ]
            )
        )
        return yaml.safe_dump(nest(section, {key: "@"})).replace("'@'", value).encode()
    if shape == 3:
        depth = draw(st.sampled_from([50, 2000, 20_000]))
        return draw(
            st.sampled_from([b"[" * depth + b"]" * depth, b"{a: " * depth + b"1" + b"}" * depth])
        )
    if shape == 4:
        prefix = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"mqtt:\n  host: \xc3", b""]))
        return prefix + draw(st.binary(max_size=20))
    text = yaml.safe_dump(nest("mqtt", {"host": "h"})).encode()
    cut = draw(st.integers(0, len(text)))
    return text[:cut] + draw(st.binary(max_size=3)) + text[cut:]


@FUZZ
@given(content=yaml_files())
@example(content=b"mqtt:\n  host: \xff\n")
@example(content=b"[" * 20_000 + b"]" * 20_000)
@example(content=b"mqtt:\n  port: " + b"9" * 5000 + b"\n")
@example(content=b"source:\n  fps: .inf\n")
@example(content=b"mqtt:\n  command_max_age_s: 1e400\n")
# Found by an audit: these loaded, then killed a thread or were retried for ever.
@example(content=b"source:\n  read_timeout_s: 1e10\n")
@example(content=b"source:\n  fps: 1e-11\n")
@example(content=b"service:\n  watchdog_stall_s: 1e10\n")
@example(content=b"mqtt:\n  host: ''\n")
@example(content=b"mqtt:\n  keepalive_s: 200000\n")
@example(content=b'mqtt:\n  client_id: "a\\0b"\n')
@example(content=b'mqtt:\n  topic_prefix: "a\\x01"\n')
def test_any_file_loads_or_raises_config_error_naming_the_file(
    content: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content)
    outcome = load_or_error(path)
    assert isinstance(outcome, ConfigError) or usable(outcome)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"mqtt:\n  host: \xff\n", "not UTF-8 text"),
        (b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
        # Python 3.10 says "limit (4300)", 3.11 "(4300 digits)"
        (b"mqtt:\n  port: " + b"9" * 5000 + b"\n", "4300"),
        (b"source:\n  fps: .inf\n", "source.fps: Input should be a finite number"),
        (b"service:\n  watchdog_stall_s: .inf\n", "service.watchdog_stall_s"),
    ],
)
def test_what_the_fuzzing_found_is_a_config_error(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """Found by the fuzzing: these raised UnicodeDecodeError, RecursionError and ValueError, or
    (infinity) loaded and raised OverflowError later in the thread waiting on the value."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: .*{re.escape(reason)}"):
        load_settings(path)
