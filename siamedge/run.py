"""`siamedge run`: load the configuration, apply command-line overrides, start the service.

The daemon's composition root: the only module that knows both the service and its front ends
(they meet through siamedge.frontend). Never holds defaults of its own: every value not given
comes from siamedge/config.py.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from siamedge.config import (
    RTSP_SCHEMES,
    Settings,
    SourceSettings,
    load_settings,
    settings_from_mapping,
)
from siamedge.errors import ConfigError, SourceError
from siamedge.frontend import FrontEnd, FrontEndFactory, ServicePort
from siamedge.native_log import NativeOutput
from siamedge.service import Service
from siamedge.sources.factory import create_source, resolve_kind
from siamedge.sources.gstreamer import GStreamerSource
from siamedge.sources.redact import redact_pipeline
from siamedge.systemd import configure_logging

log = logging.getLogger(__name__)

RTSP_HINT = (
    "source.kind rtsp decodes it with GStreamer instead of FFmpeg "
    "(decoder: nvv4l2decoder uses a Jetson's hardware decoder)"
)

# option dest -> (section, key) in the configuration
OVERRIDES: dict[str, tuple[str, str]] = {
    "model": ("model", "path"),
    "providers": ("model", "providers"),
    "source": ("source", "uri"),
    "mqtt_host": ("mqtt", "host"),
    "mqtt_port": ("mqtt", "port"),
    "topic_prefix": ("mqtt", "topic_prefix"),
    "mask_encoding": ("mqtt", "mask_encoding"),
    "max_tracks": ("tracker", "max_tracks"),
    "log_level": ("service", "log_level"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge run`."""
    parser.add_argument("-c", "--config", type=Path, help="YAML configuration (default: built-in)")
    parser.add_argument("--model", help="ONNX model file or `builtin` (model.path)")
    parser.add_argument(
        "--providers", help="`auto` or a comma list of tensorrt,cuda,cpu (model.providers)"
    )
    parser.add_argument("--source", help="camera, pipeline, URL, file, folder or `synthetic`")
    parser.add_argument("--mqtt-host", help="broker host (mqtt.host)")
    parser.add_argument("--mqtt-port", type=int, help="broker port (mqtt.port)")
    parser.add_argument("--topic-prefix", help="prefix of every topic (mqtt.topic_prefix)")
    parser.add_argument(
        "--mask-encoding", choices=["rle", "polygon", "png", "none"], help="mqtt.mask_encoding"
    )
    parser.add_argument("--max-tracks", type=int, help="tracker.max_tracks")
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="service.log_level"
    )
    parser.add_argument(
        "--print-pipeline",
        action="store_true",
        help="print the GStreamer pipeline the source settings give (passwords hidden) and exit",
    )


def apply_overrides(settings: Settings, args: argparse.Namespace, origin: str) -> Settings:
    """The settings with the options given on the command line replacing their keys."""
    data: dict[str, Any] = settings.model_dump()
    for dest, (section, key) in OVERRIDES.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "providers" and value != "auto":
            value = [name.strip() for name in value.split(",")]
        data[section][key] = value
    return settings_from_mapping(data, f"{origin} with command-line options")


def front_ends(settings: Settings) -> list[FrontEndFactory]:
    """The front ends the settings enable: the web view when web.enabled, the Prometheus
    endpoint when metrics.enabled."""
    factories: list[FrontEndFactory] = []
    if settings.web.enabled:
        web_settings = settings.web

        def web_view(service: ServicePort) -> FrontEnd:
            # Imported here: a daemon without the web view never loads it.
            from siamedge.web.server import WebServer  # noqa: PLC0415

            return WebServer(service, web_settings)

        factories.append(web_view)
    if settings.metrics.enabled:
        factories.append(metrics_endpoint_factory(settings))
    return factories


def metrics_endpoint_factory(settings: Settings) -> FrontEndFactory:
    """The Prometheus endpoint's factory; ConfigError naming the extra when prometheus_client
    is not installed (checked now, before the service starts)."""
    try:
        # Imported here: a daemon without metrics never loads prometheus_client.
        from siamedge.metrics import MetricsEndpoint  # noqa: PLC0415
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("prometheus_client"):
            raise
        raise ConfigError(
            "metrics.enabled needs prometheus_client: pip install 'siamedge[metrics]'"
        ) from None
    metrics_settings = settings.metrics

    def metrics_endpoint(service: ServicePort) -> FrontEnd:
        return MetricsEndpoint(service, metrics_settings)

    return metrics_endpoint


def run_service(settings: Settings, config_path: Path | None) -> int:
    """Run the daemon with its front ends and signal handling; returns the exit status."""
    service = Service(settings, front_ends=front_ends(settings))
    service.install_signal_handlers()
    log.info("configuration: %s", config_path or "embedded defaults")
    return service.run()


def run(args: argparse.Namespace) -> int:
    """Start the daemon; a bad configuration raises ConfigError (exit status 78)."""
    origin = str(args.config) if args.config else "embedded defaults"
    settings = apply_overrides(load_settings(args.config), args, origin)
    if args.print_pipeline:
        print(source_pipeline_text(settings.source))
        return 0
    # FFmpeg, GStreamer and OpenCV write to fds 1 and 2: through logging, each line once.
    with NativeOutput(settings.service.log_level):
        configure_logging(settings.service.log_level)
        try:
            return run_service(settings, args.config)
        except ConfigError as exc:  # found while starting (a taken port, an unreadable CA...)
            if args.config is None or str(exc).startswith(f"{args.config}:"):
                raise
            raise ConfigError(f"{args.config}: {exc}") from None


def source_pipeline_text(settings: SourceSettings) -> str:
    """The pipeline the source settings run (redacted), or what the source is when it is not
    a GStreamer pipeline; ConfigError naming source.uri when the settings name no source."""
    try:
        kind = resolve_kind(settings)
        source = create_source(settings)
    except SourceError as exc:
        raise ConfigError(f"source.uri: {exc}") from None
    if isinstance(source, GStreamerSource):
        return redact_pipeline(source.pipeline)
    text = f"{source.description}: a {kind} source, not a GStreamer pipeline"
    scheme = settings.uri.strip().partition("://")[0].lower()
    if kind == "stream" and scheme in RTSP_SCHEMES:
        text += f"; {RTSP_HINT}"
    return text
