"""siamedge.client against the real daemon on a real mosquitto: start returns the id and results
arrive typed (masks decoded), bad commands raise with the daemon's reason, stop works, and a
missing daemon or broker raises a timeout error; every method connects on its own, a closed client
raises, bad arguments raise before anything is sent; plus parsing of results without a daemon."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.coco import coco_decode
from fixtures.daemon import (
    TEST_CLIP,
    Daemon,
    box_iou,
    current_frame,
    daemon_config,
    start_daemon,
    truth_box,
    unique_prefix,
)
from fixtures.mosquitto import (
    WAIT_TIMEOUT_S,
    Broker,
    MqttCollector,
    free_port,
    write_password_file,
)

from siamedge.client import (
    Client,
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    Frame,
    Mask,
    Status,
    TrackDropped,
    parse_results,
)
from siamedge.config import MqttSettings
from siamedge.errors import CommandError
from siamedge.messaging.protocol import (
    SourceStatus,
    StatusReport,
    encode_results,
    error_message,
    status_message,
    track_dropped_message,
)
from siamedge.messaging.topics import Topics
from siamedge.tracking.result import MaskWindow, TrackResult, TrackState

pytestmark = pytest.mark.timeout(120)
ONLINE_TIMEOUT_S = 60.0
RESULTS_IDLE_S = 10.0
NO_DAEMON_TIMEOUT_S = 0.3
TRACKED_FRAMES = 30
MIN_MEAN_IOU = 0.7


@pytest.fixture(scope="module")
def daemon(mosquitto: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    config = daemon_config(mosquitto, unique_prefix(), tracker={"max_tracks": 2})
    running = start_daemon(tmp_path_factory.mktemp("daemon"), config)
    yield running
    assert running.stop() == 0


@pytest.fixture
def client(daemon: Daemon, mosquitto: Broker) -> Iterator[Client]:
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, topic_prefix=daemon.prefix)
    with Client(settings) as connected:
        try:
            connected.wait_online(ONLINE_TIMEOUT_S)
        except ClientTimeoutError as exc:
            raise AssertionError(f"{exc}\ndaemon log:\n{daemon.log[-3000:]}") from None
        yield connected
        connected.stop()  # every test leaves the daemon with no track


def coming_box(client: Client) -> tuple[int, int, int, int]:
    """The object's true box of the frame after the daemon's current one."""
    assert client.status is not None
    return truth_box(current_frame(dict(client.status.report)) + 1)


def test_start_returns_the_id_and_results_arrive_typed(client: Client) -> None:
    assert client.start(coming_box(client), "car") == "car"
    frames: list[Frame] = []
    for frame in client.results(idle_timeout_s=RESULTS_IDLE_S):
        if frame.tracks:
            frames.append(frame)
        if len(frames) == TRACKED_FRAMES:
            break
    assert len(frames) == TRACKED_FRAMES
    ious = []
    for frame in frames:
        assert (frame.width, frame.height) == (TEST_CLIP.width, TEST_CLIP.height)
        assert frame.protocol == 1
        (track,) = frame.tracks
        assert track.track_id == "car"
        assert track.state in {"tracking", "lost"}
        assert all(math.isfinite(value) for value in (*track.center, *track.size))
        assert len(track.rotated_box) == 4
        ious.append(box_iou(track.bbox, truth_box(frame.frame)))
    assert float(np.mean(ious)) > MIN_MEAN_IOU
    mask = frames[-1].tracks[0].mask
    assert mask is not None
    assert mask.format == "rle"
    decoded = mask.to_array()
    assert decoded.shape == (TEST_CLIP.height, TEST_CLIP.width)
    assert decoded.dtype == np.bool_
    assert decoded.any()
    np.testing.assert_array_equal(decoded, coco_decode(dict(mask.encoded)))


def test_the_readme_example_runs_and_decodes_a_mask(
    client: Client, mosquitto: Broker, daemon: Daemon, repo_root: Path
) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    example = readme.split("### Client library", 1)[1].split("```python\n", 1)[1].split("```")[0]
    settings_call = 'MqttSettings(host="127.0.0.1", topic_prefix="siamedge/cam-01/")'
    assert settings_call in example
    example = example.replace(settings_call, "settings")
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, topic_prefix=daemon.prefix)
    namespace: dict[str, Any] = {"settings": settings, "print": lambda *args: None}
    exec(compile(example, "README.md", "exec"), namespace)  # our own README
    mask = namespace["mask"]
    assert mask.shape == (TEST_CLIP.height, TEST_CLIP.width) and mask.dtype == np.bool_
    assert mask.any()


def test_stop_ends_the_track(client: Client) -> None:
    track_id = client.start(coming_box(client))
    assert track_id.startswith("t")
    next(frame for frame in client.results(RESULTS_IDLE_S) if frame.tracks)
    client.stop(track_id)
    # The daemon sends one empty results message after the last track stops.
    after = next(frame for frame in client.results(RESULTS_IDLE_S) if not frame.tracks)
    assert after.tracks == ()


def test_a_bad_box_raises_with_the_daemons_reason(client: Client) -> None:
    with pytest.raises(ClientError) as raised:
        client.start((5000, 5000, 10, 10))
    assert not isinstance(raised.value, ClientTimeoutError)
    assert raised.value.reason == (
        "box [5000, 5000, 10, 10] lies entirely outside the "
        f"{TEST_CLIP.width}x{TEST_CLIP.height} frame"
    )
    assert raised.value.request_id is not None
    with pytest.raises(ClientError, match="box size must be positive"):
        client.start((10, 10, 0, 50))


def test_stopping_an_unknown_track_raises(client: Client) -> None:
    with pytest.raises(ClientError, match="no track 'nope'"):
        client.stop("nope")


def test_no_daemon_is_a_timeout(mosquitto: Broker) -> None:
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, topic_prefix=unique_prefix())
    with Client(settings) as client:
        with pytest.raises(ClientTimeoutError, match="no reply to start from siamedge within"):
            client.start((1, 2, 3, 4), timeout_s=0.5)
        with pytest.raises(ClientTimeoutError, match="did not come online"):
            client.wait_online(0.5)


def test_a_timeout_says_when_the_daemon_said_it_is_offline(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    # It asked whether the daemon ran with this topic_prefix, when the retained status said
    # the daemon had shut down.
    prefix = unique_prefix()
    topics = Topics.for_prefix(prefix)
    publisher = mqtt_collector(mosquitto, [])
    publisher.publish(
        topics.status, json.dumps({"online": False, "reason": "shutdown"}), retain=True
    )
    settings = settings_for(mosquitto, prefix)
    try:
        with Client(settings) as client:
            with pytest.raises(ClientTimeoutError) as raised:
                client.start((1, 2, 3, 4), timeout_s=0.5)
            assert "(its latest status says it is offline (shutdown))" in str(raised.value)
    finally:
        publisher.publish(topics.status, b"", retain=True)


def test_no_broker_is_a_timeout() -> None:
    settings = MqttSettings(port=free_port(), reconnect_min_s=0.2, reconnect_max_s=0.5)
    client = Client(settings)
    try:
        with pytest.raises(ClientTimeoutError, match="no connection to the MQTT broker"):
            client.connect(timeout_s=0.5)
        assert not client.ever_connected
    finally:
        client.close()


def test_a_failed_connect_leaves_no_connection_running() -> None:
    # `with Client(...).connect() as client:` (the README's form) with the broker down: connect()
    # raised, and the connection it had started went on retrying in its own paho thread for
    # good, with nothing left to close it (one more thread for each attempt of a dashboard).
    settings = MqttSettings(port=free_port(), reconnect_min_s=0.2, reconnect_max_s=0.5)
    before = set(threading.enumerate())
    for _ in range(3):
        with (
            pytest.raises(ClientTimeoutError, match=r"no connection to the MQTT broker .*: cannot"),
            Client(settings).connect(timeout_s=0.5),
        ):
            pass
    assert [thread.name for thread in set(threading.enumerate()) - before] == []
    client = Client(settings)  # one the caller already uses stays theirs to wait on and close
    try:
        assert client.poll(0) is None
        with pytest.raises(ClientTimeoutError):
            client.connect(timeout_s=0.5)
        assert client.state != "closed"
    finally:
        client.close()


def test_a_refused_login_is_named_not_hidden_behind_the_disconnect(
    mosquitto_factory: Callable[..., Broker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker's CONNACK said "Not authorized"; the disconnect that follows it (paho:
    # "Protocol error") overwrote it, so a wrong password read as a broken broker.
    passwords = write_password_file(tmp_path / "passwd", {"controller": "right"})
    broker = mosquitto_factory(anonymous=False, password_file=passwords)
    monkeypatch.setenv("SIAMEDGE_TEST_MQTT_PW", "wrong")
    settings = MqttSettings(
        host=broker.host,
        port=broker.port,
        username="controller",
        password_env="SIAMEDGE_TEST_MQTT_PW",
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
    )
    client = Client(settings)
    try:
        with pytest.raises(ClientTimeoutError) as caught:
            client.connect(timeout_s=1.5)
    finally:
        client.close()
    assert str(caught.value) == (
        f"no connection to the MQTT broker {broker.host}:{broker.port} within 1.5 s: "
        "broker refused the connection: Not authorized"
    )


def test_a_command_expires_when_the_caller_stops_waiting(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    # A start the caller had been told timed out was carried out when a frame came later.
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, topic_prefix=unique_prefix())
    topics = Topics.for_prefix(settings.topic_prefix)
    collector = mqtt_collector(mosquitto, [topics.start])
    with Client(settings) as client, pytest.raises(ClientTimeoutError):
        client.start((1, 2, 3, 4), timeout_s=2.9)
    (sent,) = collector.wait_for(topics.start)
    assert sent.properties is not None
    # Never past the caller's wait: ceil(2.9) let a start waiting for a slow camera's frame be
    # carried out almost a second after the caller was told it timed out.
    assert sent.properties.MessageExpiryInterval in (1, 2)  # floor(2.9), less what passed


def test_a_command_given_up_on_during_a_broker_outage_is_never_sent(
    mosquitto_factory: Callable[..., Broker], mqtt_collector: Callable[..., MqttCollector]
) -> None:
    # start() raised ClientTimeoutError while the broker was down, but paho had queued the
    # PUBLISH and sent it when the broker came back: the daemon started the track seconds after
    # the caller was told it had not (MQTT 5's expiry only counts from the broker's receipt).
    broker = mosquitto_factory()
    settings = MqttSettings(
        host=broker.host,
        port=broker.port,
        topic_prefix=unique_prefix(),
        reconnect_min_s=1.0,
        reconnect_max_s=1.0,
    )
    topics = Topics.for_prefix(settings.topic_prefix)
    with Client(settings) as client:
        broker.stop()
        while client.state == "subscribed":
            client.poll(0.05)
        with pytest.raises(ClientTimeoutError):
            client.start((1, 2, 3, 4), timeout_s=NO_DAEMON_TIMEOUT_S)
        broker.start()
        collector = mqtt_collector(broker, [topics.start])  # before the client reconnects
        client.connect()  # paho sends what it queued at the CONNACK, before this returns
        with pytest.raises(AssertionError):
            collector.wait_for(topics.start, timeout_s=1.0)


def test_results_parse_into_dataclasses() -> None:
    bits = np.ones((2, 3), np.bool_)
    track = TrackResult(
        center_xy=(5.5, float("nan")),
        size_wh=(3.0, 2.0),
        bbox_xywh=(4.0, 3.0, 3.0, 2.0),
        rotated_box=((4.0, 3.0), (7.0, 3.0), (7.0, 5.0), (4.0, 5.0)),
        score=None,
        state=TrackState.TRACKING,
        mask=MaskWindow(bits, (4, 3), (10, 8), np.zeros((0, 2), np.int32)),
    )
    data = json.loads(encode_results(12, 100.0, (10, 8), [("a", track)], publish_time=100.01))
    frame = parse_results(data)
    assert (frame.frame, frame.width, frame.height, frame.timestamp) == (12, 10, 8, 100.0)
    (parsed,) = frame.tracks
    assert parsed.center[0] == 5.5
    assert math.isnan(parsed.center[1])  # null in the message
    assert parsed.score is None
    assert parsed.mask is not None
    expected = np.zeros((8, 10), np.bool_)
    expected[3:5, 4:7] = True
    np.testing.assert_array_equal(parsed.mask.to_array(), expected)
    with pytest.raises(KeyError):
        parse_results({**data, "tracks": [{"track_id": "a"}]})


def test_status_keeps_the_report() -> None:
    status = Status(online=True, report={"version": "1.2.3", "fps": 30.0})
    assert status.version == "1.2.3"


def test_acks_and_malformed_messages_are_not_events(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    prefix = unique_prefix()
    topics = Topics.for_prefix(prefix)
    publisher = mqtt_collector(mosquitto, [])
    settings = settings_for(mosquitto, prefix)
    empty_frame = encode_results(4, 100.0, (10, 8), [], publish_time=100.01)
    with Client(settings) as client:
        # In order on each topic: the malformed ones come before the valid one.
        publisher.publish(topics.results, b"not json")
        publisher.publish(topics.results, json.dumps({"frame": 3}))  # no tracks etc.
        publisher.publish(topics.results, empty_frame)
        frame = next(client.results(RESULTS_IDLE_S))
        assert frame.frame == 4
        assert client.ignored == 2
        publisher.publish(topics.status, json.dumps({"ack": "stop", "track_id": "t1"}))
        publisher.publish(topics.status, json.dumps({"online": False, "reason": "shutdown"}))
        event = client.poll(RESULTS_IDLE_S)
        while event is None:
            event = client.poll(RESULTS_IDLE_S)
        assert isinstance(event, Status)  # the ack is an answer, not a status report
        assert event.online is False
        assert event.report["reason"] == "shutdown"
        assert client.status == event
        assert client.ignored == 2


def test_a_poll_that_does_not_wait_finds_the_event_behind_a_skipped_message(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    # poll(0) gave up at the first message that is no event (one it skips), with a frame behind.
    prefix = unique_prefix()
    topics = Topics.for_prefix(prefix)
    publisher = mqtt_collector(mosquitto, [])
    settings = settings_for(mosquitto, prefix)
    with Client(settings) as client:
        publisher.publish(topics.results, b"not json")
        publisher.publish(
            topics.results, encode_results(4, 100.0, (10, 8), [], publish_time=100.01)
        )
        time.sleep(1.0)  # both delivered to the client by then (loopback)
        event = client.poll(0)
        assert isinstance(event, Frame)
        assert event.frame == 4
        assert client.ignored == 1


def test_any_malformed_results_message_is_skipped_not_raised(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    # A track that is not an object, an infinite size or frame number, JSON nested past the
    # parser's recursion limit: each escaped poll() (and so `siamedge watch`) as
    # AttributeError, OverflowError or RecursionError instead of being skipped and counted.
    prefix = unique_prefix()
    topics = Topics.for_prefix(prefix)
    publisher = mqtt_collector(mosquitto, [])
    empty_frame = json.loads(encode_results(4, 100.0, (10, 8), [], publish_time=100.01))
    malformed = [
        json.dumps({**empty_frame, "tracks": ["t1"]}),
        json.dumps({**empty_frame, "tracks": {"t1": {}}}),
        json.dumps({**empty_frame, "width": math.inf}),  # json writes Infinity, and reads it
        json.dumps({**empty_frame, "frame": 1e400}),
        "[" * 100_000 + "]" * 100_000,
    ]
    with Client(settings_for(mosquitto, prefix)) as client:
        for payload in malformed:
            publisher.publish(topics.results, payload)
        publisher.publish(topics.results, json.dumps(empty_frame))
        frame = next(client.results(RESULTS_IDLE_S))
        assert frame.frame == 4
        assert client.ignored == len(malformed)


@pytest.mark.parametrize(
    "mask",
    [
        {"format": "rle", "size": [4, 4]},
        {"format": "rle", "size": 16, "counts": "0"},
        {"format": "png", "size": [4, 4], "data": ""},
        {"format": "polygon"},
        {"format": "polygon", "points": None},
    ],
)
def test_a_malformed_mask_is_a_value_error(mask: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="malformed"):
        Mask(mask["format"], mask, (4, 4)).to_array()


def test_a_track_the_daemon_dropped_is_an_event_and_command_errors_are_not(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    prefix = unique_prefix()
    topics = Topics.for_prefix(prefix)
    publisher = mqtt_collector(mosquitto, [])
    with Client(settings_for(mosquitto, prefix)) as client:
        client.connect()
        # Another client's refused command, then a track the daemon ended by itself.
        error = error_message(CommandError("no track 'x'", "r9"), topics.stop, b"{}")
        publisher.publish(topics.errors, json.dumps(error))
        dropped = track_dropped_message("t1", "frame size changed from (8, 6) to (4, 3)")
        publisher.publish(topics.errors, json.dumps(dropped))
        event = client.poll(RESULTS_IDLE_S)
        while event is None:
            event = client.poll(RESULTS_IDLE_S)
        assert event == TrackDropped(
            "t1", "track 't1' dropped: frame size changed from (8, 6) to (4, 3)"
        )
        assert client.ignored == 0


def settings_for(broker: Broker, prefix: str) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port, topic_prefix=prefix)


def status_payload(source: SourceStatus) -> str:
    """A full online report, as the daemon sends it, with the given source."""
    report = StatusReport(
        model="builtin",
        provider="CPUExecutionProvider",
        source=source,
        fps=0.0,
        dropped_frames=0,
        track_ids=(),
        max_tracks=2,
        mask_encoding="rle",
        uptime_s=1.0,
        frame=7,
    )
    return json.dumps(status_message(report))


@pytest.fixture
def offline_client() -> Iterator[Client]:
    """A client of a port where no broker listens."""
    client = Client(MqttSettings(port=free_port()))
    yield client
    client.close()


def test_results_and_poll_connect_on_their_own(
    client: Client, daemon: Daemon, mosquitto: Broker
) -> None:
    client.start(coming_box(client), "own")
    fresh = Client(settings_for(mosquitto, daemon.prefix))
    try:
        assert fresh.poll(RESULTS_IDLE_S) is not None  # the retained status, or a frame
        frame = next(fresh.results(idle_timeout_s=RESULTS_IDLE_S))
        assert [track.track_id for track in frame.tracks] == ["own"]
        assert fresh.state == "subscribed"
    finally:
        fresh.close()


def test_wait_online_returns_at_once_when_the_latest_status_is_online(client: Client) -> None:
    assert client.status is not None  # the fixture's wait_online read it
    status = client.wait_online(0.01)  # shorter than the daemon's status interval
    assert status.online
    assert status is client.status


def test_wait_online_ignores_an_online_report_that_is_no_longer_the_latest(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    prefix = unique_prefix()
    status_topic = Topics.for_prefix(prefix).status
    publisher = mqtt_collector(mosquitto, [])
    streaming = SourceStatus("synthetic", open=True, state="streaming")
    with Client(settings_for(mosquitto, prefix)) as client:
        publisher.publish(status_topic, status_payload(streaming))
        assert client.wait_online(RESULTS_IDLE_S).online
        publisher.publish(status_topic, json.dumps({"online": False, "reason": "shutdown"}))
        while client.status is None or client.status.online:
            client.poll(RESULTS_IDLE_S)
        with pytest.raises(ClientTimeoutError, match="did not come online"):
            client.wait_online(NO_DAEMON_TIMEOUT_S)


def test_a_start_timeout_names_a_source_without_frames(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    prefix = unique_prefix()
    publisher = mqtt_collector(mosquitto, [])
    retrying = SourceStatus("rtsp://cam", open=False, error="connection refused", state="retrying")
    with Client(settings_for(mosquitto, prefix)) as client:
        publisher.publish(Topics.for_prefix(prefix).status, status_payload(retrying))
        client.wait_online(WAIT_TIMEOUT_S, with_frames=False)  # read before the short start
        with pytest.raises(ClientTimeoutError) as raised:
            client.start((1, 2, 3, 4), timeout_s=NO_DAEMON_TIMEOUT_S)
    message = str(raised.value)
    assert "the daemon is online but its source is retrying: connection refused; " in message
    assert "the start waits for a frame" in message
    assert "is the daemon running" not in message


def test_a_closed_client_raises_and_does_not_reconnect(mosquitto: Broker) -> None:
    with Client(settings_for(mosquitto, unique_prefix())) as client:
        assert client.state == "subscribed"
    calls: list[Callable[[], object]] = [
        lambda: client.start((1, 2, 3, 4), timeout_s=NO_DAEMON_TIMEOUT_S),
        lambda: client.stop(timeout_s=NO_DAEMON_TIMEOUT_S),
        client.connect,
        client.poll,
        lambda: client.results(NO_DAEMON_TIMEOUT_S),
        lambda: client.wait_online(NO_DAEMON_TIMEOUT_S),
        client.__enter__,
    ]
    for call in calls:
        with pytest.raises(ClientClosedError, match="is closed; make a new Client"):
            call()
    assert client.state != "subscribed"
    client.close()  # a second close is harmless


def test_a_client_closed_before_use_raises(offline_client: Client) -> None:
    offline_client.close()
    with pytest.raises(ClientClosedError):
        offline_client.start((1, 2, 3, 4))


@pytest.mark.parametrize("timeout_s", [0, -1.0, math.inf, math.nan, 1e10, "5", True])
def test_a_bad_timeout_is_a_value_error(offline_client: Client, timeout_s: Any) -> None:
    with pytest.raises(ValueError, match="timeout_s must be seconds > 0 and <= 86400"):
        offline_client.start((1, 2, 3, 4), timeout_s=timeout_s)
    with pytest.raises(ValueError, match="timeout_s must be seconds > 0"):
        offline_client.stop(timeout_s=timeout_s)
    with pytest.raises(ValueError, match="timeout_s must be seconds > 0"):
        offline_client.connect(timeout_s=timeout_s)
    with pytest.raises(ValueError, match="timeout_s must be seconds > 0"):
        offline_client.wait_online(timeout_s)
    with pytest.raises(ValueError, match="idle_timeout_s must be seconds > 0"):
        offline_client.results(idle_timeout_s=timeout_s)
    if timeout_s != 0:
        with pytest.raises(ValueError, match="timeout_s must be seconds >= 0"):
            offline_client.poll(timeout_s)


@pytest.mark.parametrize(
    ("box", "normalized"),
    [
        ("1,2,3,4", False),
        (None, False),
        ((1, 2, 3), False),
        ((1, 2, 3, 4, 5), False),
        ((1, 2, True, 4), False),
        ((1, 2, "3", 4), False),
        ({"x": 1, "y": 2, "w": 3, "h": 4}, False),
        ((1, 2, 3, math.nan), False),
        ((1, 2, math.inf, 4), False),
        ((0.1, 0.2, 1.5, 0.3), True),
        ((-0.1, 0.2, 0.5, 0.3), True),
    ],
)
def test_a_box_that_is_not_4_finite_numbers_is_a_value_error_naming_it(
    offline_client: Client, box: Any, normalized: bool
) -> None:
    with pytest.raises(ValueError, match=r"box .*got " + re.escape(repr(box))):
        offline_client.start(box, normalized=normalized, timeout_s=NO_DAEMON_TIMEOUT_S)


def test_bad_arguments_send_nothing(
    mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    prefix = unique_prefix()
    topics = Topics.for_prefix(prefix)
    collector = mqtt_collector(mosquitto, [topics.start, topics.stop])
    with Client(settings_for(mosquitto, prefix)) as client:
        for timeout_s in (0, math.inf, 1e10):
            with pytest.raises(ValueError):
                client.start((1, 2, 3, 4), timeout_s=timeout_s)
            with pytest.raises(ValueError):
                client.stop(timeout_s=timeout_s)
        with pytest.raises(ValueError):
            client.start("1,2,3,4")
        with pytest.raises(ClientTimeoutError):  # numpy numbers are numbers
            client.start(np.array([1, 2, 3, 4], np.float32), timeout_s=NO_DAEMON_TIMEOUT_S)
    (sent,) = collector.wait_for(topics.start)
    assert json.loads(sent.payload)["box"] == [1.0, 2.0, 3.0, 4.0]
    assert collector.messages() == [sent]
