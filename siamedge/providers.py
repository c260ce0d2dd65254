"""Execution providers: which ones to try, their options, and opening a session with fallback.

Never imports onnxruntime: the caller (engine.py) passes the module in as `ort`.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from siamedge import contract as c
from siamedge import engine_cache, ort_log
from siamedge.config import ModelSettings
from siamedge.errors import ModelError

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_BY_NAME: Mapping[str, str] = {"tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}
AUTO_ORDER = (TENSORRT, CUDA, CPU)

MEBIBYTE = 1 << 20

GRAPH_OPTIONS = {CUDA: "enable_cuda_graph", TENSORRT: "trt_cuda_graph_enable"}
"""The provider options that ask for CUDA graph capture."""

GRAPH_CAPTURE_REFUSED = (
    "cannot use the graph capture feature",
    "cannot use the CUDA Graph feature",
)
"""What onnxruntime's error says when a session cannot capture the model as a CUDA graph (not
every node on the provider, or control flow): the CUDA provider's words, then TensorRT's. The
provider itself can still run the model."""

PROFILES_REFUSED = "provide all the dynamic shape inputs with associated profiles"
"""TensorRT's error when it takes only part of the model (onnxruntime partitions the rest to
CUDA or CPU): the parts' own dynamic inputs have no profile. Without explicit profiles it sets
them from the shapes it meets."""

NHWC_UNSUPPORTED = "This build does not support NHWC layout"
"""The CUDA provider's refusal of prefer_nhwc in a build without its NHWC kernels (built
without onnxruntime_USE_CUDA_NHWC_OPS, as the PyPI wheels up to 1.20 and, likely, the Jetson
Zoo's are): an ORT_ENFORCE in CUDAExecutionProvider's constructor, so the session fails."""

STALE_ENGINE = "could not deserialize engine from cache"
"""TensorRT's error for a cached engine it cannot load (another TensorRT runtime, a damaged
file): the engine folder is emptied and the engine built again."""

PROFILE_OPTIONS = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
OPTIONS_SINCE: Mapping[tuple[str, str], tuple[int, int]] = {
    (CUDA, "use_tf32"): (1, 18),
    (CUDA, "fuse_conv_bias"): (1, 20),
}
"""The onnxruntime release that first knows an option siamedge may set (older ones refuse the
session, and before 1.23 rebuild it by themselves without any options first): left out before
the first session there, with the warning an unknown option gets."""
_UNKNOWN_OPTION = re.compile(
    r"Unknown provider option: \"?(?P<cuda>[\w.]+)\"?|Invalid TensorRT EP option: (?P<trt>[\w.]+)"
)


def default_cache_dir() -> Path:
    """TensorRT cache folder: $STATE_DIRECTORY/trt under systemd, else ~/.cache/siamedge/trt."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        return Path(state_dir.split(":")[0]) / "trt"
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "siamedge" / "trt"


def short_provider_names(text: str) -> list[str]:
    """`tensorrt,cuda,cpu` (a comma list, any order) -> its short names; ValueError naming
    the first unknown one."""
    names = [part.strip() for part in text.split(",")]
    for short in names:
        if short not in PROVIDER_BY_NAME:
            known = ", ".join(PROVIDER_BY_NAME)
            raise ValueError(f"unknown provider {short!r}; use {known}")
    return names


def choose_providers(requested: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Ordered onnxruntime providers to try.

    requested: "auto" (TensorRT > CUDA > CPU among the available ones) or short names
    ("tensorrt", "cuda", "cpu") in order of preference. Unavailable ones are dropped with a
    warning; ProvidersUnavailableError when none is left.
    """
    if requested == "auto":
        return [name for name in AUTO_ORDER if name in available]
    chosen: list[str] = []
    for short in requested:
        name = PROVIDER_BY_NAME.get(short)
        if name is None:
            raise ModelError(f"unknown execution provider {short!r}; use tensorrt, cuda or cpu")
        if name in chosen:
            continue  # `cpu,cpu`: onnxruntime would warn about the duplicate on stderr
        if name in available:
            chosen.append(name)
        else:
            log.warning("execution provider %s is not available in this onnxruntime build", short)
    if not chosen:
        raise ProvidersUnavailableError(
            f"none of the requested execution providers {list(requested)} is available; "
            f"this onnxruntime offers {list(available)}"
        )
    return chosen


def require_available(ort: ModuleType, requested: str | Sequence[str]) -> None:
    """ProvidersUnavailableError when an explicit list names no provider this onnxruntime
    offers: checked before the model file is looked at, since no file can mend it."""
    available = ort.get_available_providers()
    if requested != "auto" and not any(PROVIDER_BY_NAME.get(s) in available for s in requested):
        choose_providers(requested, available)  # raises, naming both lists


class ProvidersUnavailableError(ModelError):
    """No provider of an explicit list is offered by this onnxruntime build: a configuration
    mismatch that no model file can mend."""


class ProfileError(ModelError):
    """The model's inputs cannot be described by a TensorRT batch profile."""


@dataclass(frozen=True)
class TrtProfiles:
    """TensorRT optimisation profile strings: "name:1x3x255x255,name2:1x2" for min/opt/max."""

    min_shapes: str
    opt_shapes: str
    max_shapes: str


def provider_options(
    name: str,
    settings: ModelSettings,
    cache_dir: Path,
    profiles: TrtProfiles | None = None,
    engine_dir: Path | None = None,
) -> dict[str, Any]:
    """onnxruntime provider options for one provider.

    TensorRT's timing cache lives in cache_dir, its engines in engine_dir (default: cache_dir;
    see engine_cache.engine_dir); profiles: the batch range of a model with a dynamic batch
    dimension (TensorRT needs one for every dynamic input). Option names and value formats are
    onnxruntime's: TensorRT reads booleans as "True"/"False", CUDA as 0/1.
    """
    if name == TENSORRT:
        options: dict[str, Any] = {
            "device_id": settings.cuda_device_id,
            "trt_fp16_enable": settings.trt_fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engine_dir or cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache_dir),
        }
        if settings.trt_workspace_mb:  # 0: onnxruntime's own default
            options["trt_max_workspace_size"] = settings.trt_workspace_mb * MEBIBYTE
        if settings.trt_builder_optimization_level is not None:
            options["trt_builder_optimization_level"] = settings.trt_builder_optimization_level
        if settings.trt_dla_enable:
            options["trt_dla_enable"] = True
            options["trt_dla_core"] = settings.trt_dla_core
        if settings.trt_cuda_graph:
            options[GRAPH_OPTIONS[TENSORRT]] = True
        if profiles is not None:
            options["trt_profile_min_shapes"] = profiles.min_shapes
            options["trt_profile_opt_shapes"] = profiles.opt_shapes
            options["trt_profile_max_shapes"] = profiles.max_shapes
        return options
    if name == CUDA:
        options = {
            "device_id": settings.cuda_device_id,
            "use_tf32": int(settings.cuda_tf32),
            "cudnn_conv_algo_search": settings.cuda_conv_algo_search,
            "arena_extend_strategy": settings.cuda_arena_extend_strategy,
            "do_copy_in_default_stream": int(settings.cuda_copy_in_default_stream),
        }
        if settings.cuda_mem_limit_mb is not None:
            options["gpu_mem_limit"] = settings.cuda_mem_limit_mb * MEBIBYTE
        if settings.cuda_prefer_nhwc:  # only when asked: onnxruntime before 1.17 lacks the key
            options["prefer_nhwc"] = 1
        if settings.cuda_fuse_conv_bias:  # only when asked: older onnxruntime lacks the key
            options["fuse_conv_bias"] = 1
        if settings.cuda_graph:
            options[GRAPH_OPTIONS[CUDA]] = 1
        return options
    return {}


def trt_profiles(inputs: Sequence[tuple[str, Sequence[Any]]], max_batch: int) -> TrtProfiles | None:
    """Batch 1 / max_batch / max_batch for every input whose first dimension is symbolic.

    inputs: (name, shape) as onnxruntime declares them (int for a fixed dimension, a str or
    None for a symbolic one). Scalars and inputs with a fixed first dimension need no entry;
    None when no input has a symbolic batch. ProfileError when an input has a symbolic
    dimension that is not its first (TensorRT would need its range too).
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    low: list[str] = []
    high: list[str] = []
    for name, shape in inputs:
        symbolic = [not isinstance(dim, int) or dim < 0 for dim in shape]
        if any(symbolic[1:]):
            raise ProfileError(
                f"input {name!r} has a symbolic dimension besides the batch ({list(shape)})"
            )
        if not shape or not symbolic[0]:
            continue
        if ":" in name or "," in name:
            raise ProfileError(f"input {name!r} has a ':' or ',' in its name")
        rest = "".join(f"x{dim}" for dim in shape[1:])
        low.append(f"{name}:1{rest}")
        high.append(f"{name}:{max_batch}{rest}")
    if not low:
        return None
    return TrtProfiles(
        min_shapes=",".join(low), opt_shapes=",".join(high), max_shapes=",".join(high)
    )


@dataclass(frozen=True)
class Declaration:
    """What a model file declares, as onnxruntime reads it."""

    inputs: list[tuple[str, list[Any]]]
    """(name, shape) of each input: an int for a fixed dimension, a str or None otherwise."""
    metadata: dict[str, str]


def read_declaration(ort: ModuleType, path: Path) -> Declaration:
    """The model's inputs and metadata, read on the CPU without optimising the graph."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with ort_log.captured():
        try:
            session = ort.InferenceSession(str(path), options, providers=[CPU])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: cannot load the model: {_short_error(exc)}") from exc
    return Declaration(
        [(arg.name, list(arg.shape)) for arg in session.get_inputs()],
        dict(session.get_modelmeta().custom_metadata_map),
    )


def cuda_settings_for(
    settings: ModelSettings, metadata: Mapping[str, str], where: str
) -> ModelSettings:
    """settings for this model on the CUDA provider: use_tf32 on for a float16 network.

    TF32 changes float32 maths only, and a float16 network has no float32 convolution; with
    use_tf32 off, though, onnxruntime withholds cuDNN's tensor-core engines from every
    convolution, so the float16 ones first find no execution plan and are planned again.
    """
    if settings.cuda_tf32 or c.network_precision(metadata, where) != c.PRECISION_FLOAT16:
        return settings
    log.info(
        "%s: float16 network: the CUDA provider runs with use_tf32 on (it changes float32 "
        "maths only; off, cuDNN would get no tensor-core engines for the float16 convolutions)",
        where,
    )
    return settings.model_copy(update={"cuda_tf32": True})


def prepare_cache_dir(path: Path) -> Path:
    """Create the TensorRT cache folder; ModelError when it cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"TensorRT cache folder {path} cannot be created: {exc.strerror}"
        ) from None
    if not os.access(path, os.W_OK):
        raise ModelError(f"TensorRT cache folder {path} is not writable")
    return path


def session_options(ort: ModuleType, settings: ModelSettings) -> Any:
    """onnxruntime SessionOptions: CPU threads, spinning and log severity from the settings."""
    options = ort.SessionOptions()
    if settings.intra_op_threads is not None:
        options.intra_op_num_threads = settings.intra_op_threads
    if not settings.intra_op_spinning:
        # Spinning worker threads burn the cores the capture and MQTT threads need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ort_log.apply_severity(ort, options, settings.ort_log_level)
    return options


def open_session(
    ort: ModuleType,
    path: Path,
    settings: ModelSettings,
    *,
    cache_dir: Path | None = None,
    max_batch: int = 1,
) -> Any:
    """An InferenceSession of the model at path on the best provider that starts.

    ort: the onnxruntime module. cache_dir overrides settings.cache_dir for the TensorRT caches.
    max_batch: the most targets one call carries (TensorRT optimisation profiles of a model
    with a dynamic batch dimension). A provider that does not start is logged once, with the
    reason onnxruntime gave (e.g. the missing library) and the provider that runs instead;
    onnxruntime's own fallback (which drops the provider options) never runs. ModelError when
    the model cannot be loaded or no provider starts.
    """
    chosen = choose_providers(settings.providers, ort.get_available_providers())
    options = session_options(ort, settings)
    failed: list[tuple[str, str]] = []
    profiles = engines = None
    declaration = read_declaration(ort, path) if TENSORRT in chosen or CUDA in chosen else None
    asked_tf32 = settings.cuda_tf32
    if CUDA in chosen and declaration is not None:
        settings = cuda_settings_for(settings, declaration.metadata, str(path))
    if TENSORRT in chosen and declaration is not None:
        if CUDA in chosen and asked_tf32 and not settings.trt_tf32:
            log.warning(
                "model.cuda_tf32: true has no effect while TensorRT is tried too: TF32 stays "
                "off for the whole process (%s=0, for TensorRT's float32 layers; "
                "model.trt_tf32: true allows it for both)",
                TF32_OVERRIDE,
            )
        keep_fp32_exact(settings)
        try:
            profiles = trt_profiles(declaration.inputs, max_batch)
            if settings.trt_dla_enable and profiles is not None and max_batch > 1:
                log.warning(
                    "%s: the DLA takes fixed shapes only, and this model's batch ranges over 1-%d "
                    "targets (tracker.max_tracks): TensorRT will run it on the GPU. For the DLA, "
                    "set tracker.max_tracks: 1 or export the model with --batch 1",
                    path,
                    max_batch,
                )
            cache_dir = prepare_cache_dir(cache_dir or _configured_cache_dir(settings))
            engines = engine_cache.use_engine_dir(cache_dir, path, build=trt_build_key(settings))
        except ProfileError as exc:
            if len(chosen) == 1:
                raise ModelError(f"{path}: TensorRT cannot run this model: {exc}") from None
            failed.append((TENSORRT, str(exc)))
            chosen.remove(TENSORRT)
        except ModelError as exc:  # the caches' folders
            if len(chosen) == 1:
                raise
            # Without its engine cache TensorRT would build the engines (minutes on a Jetson)
            # at every start: the next provider runs instead, with the reason.
            failed.append((TENSORRT, f"{exc}; siamedge runs TensorRT only with its engine cache"))
            chosen.remove(TENSORRT)
        else:
            log.info("TensorRT engines of %s: %s", path.name, engines)
    with_options = [
        (
            name,
            provider_options(name, settings, cache_dir or default_cache_dir(), profiles, engines),
        )
        for name in chosen
    ]
    for name, key in _too_new(ort, with_options):
        with_options = _leave_out(ort, path, with_options, name, key)
    return _open_session(ort, path, options, with_options, failed)


def _too_new(ort: ModuleType, providers: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """(provider, key) of the options given that this onnxruntime's version predates."""
    version = ort_version(ort)
    if len(version) < 2:  # no version to go by: no pre-check (the refusal path remains)
        return []
    return [
        (name, key)
        for name, options in providers
        for key in options
        if version < OPTIONS_SINCE.get((name, key), (0, 0))
    ]


def ort_version(ort: ModuleType) -> tuple[int, ...]:
    """(1, 18) from onnxruntime's "1.18.1" or "1.18.0.dev20240401"; the parts up to the first
    that is no number, () when it gives none."""
    numbers = []
    for part in str(getattr(ort, "__version__", "")).split(".")[:2]:
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


_unknown_options_told: weakref.WeakKeyDictionary[ModuleType, set[tuple[str, str]]] = (
    weakref.WeakKeyDictionary()
)
"""(provider, option) this onnxruntime was found not to know, warned of once (the split layout
and TensorRT's second try open several sessions), DEBUG after."""


def _leave_out(
    ort: ModuleType, path: Path, providers: list[tuple[str, dict[str, Any]]], name: str, key: str
) -> list[tuple[str, dict[str, Any]]]:
    """providers without the option `key` of `name`, which this onnxruntime does not know, with
    a warning; `use_tf32: 0` becomes NVIDIA_TF32_OVERRIDE=0 (unless the environment decides)."""
    instead = "running without it"
    if name == CUDA and key == "use_tf32" and not dict(providers)[name][key]:
        instead = _tf32_off_by_environment()
    version = getattr(ort, "__version__", "?")
    told = _unknown_options_told.setdefault(ort, set())
    level = logging.DEBUG if (name, key) in told else logging.WARNING  # once per onnxruntime
    told.add((name, key))
    log.log(
        level,
        "%s: this onnxruntime (%s) does not know the %s option %s: %s",
        path,
        version,
        name,
        key,
        instead,
    )
    return _without_option(providers, name, (key,))


TF32_OVERRIDE = "NVIDIA_TF32_OVERRIDE"
"""NVIDIA's libraries (TensorRT, cuDNN, cuBLAS) use no TF32 while this is "0"."""


def keep_fp32_exact(settings: ModelSettings) -> None:
    """Turn TF32 off for NVIDIA's libraries unless model.trt_tf32 allows it or the
    environment already decides (read when the libraries load: call before the session)."""
    if not settings.trt_tf32 and _tf32_off_unless_decided() is None:
        log.debug(
            "%s=0: TensorRT builds float32 layers without TF32 (model.trt_tf32)", TF32_OVERRIDE
        )


def _tf32_off_unless_decided() -> str | None:
    """Set NVIDIA_TF32_OVERRIDE=0 unless the environment sets it; its value when it does."""
    decided = os.environ.get(TF32_OVERRIDE)
    if decided is None:
        os.environ[TF32_OVERRIDE] = "0"
    return decided


def _tf32_off_by_environment() -> str:
    """Keep TF32 off where the CUDA provider has no use_tf32 (onnxruntime before 1.18, e.g.
    the Jetson Zoo's 1.17: Orin's Ampere GPU would run float32 convolutions in TF32 and break
    parity) with NVIDIA_TF32_OVERRIDE=0, unless the environment decides already. In time: the
    option is refused while onnxruntime parses it, before the provider makes its cuDNN and
    cuBLAS handles. Says what was done."""
    decided = _tf32_off_unless_decided()
    if decided is not None:
        return f"running without it ({TF32_OVERRIDE}={decided} decides TF32)"
    return f"{TF32_OVERRIDE}=0 keeps TF32 off instead (for the whole process)"


def trt_build_key(settings: ModelSettings) -> str:
    """The settings a TensorRT engine is built with that onnxruntime's engine names leave out
    (they name precision and DLA core; profiles are checked beside them): TF32
    (NVIDIA_TF32_OVERRIDE, read at build), the builder's optimisation level and the workspace."""
    return (
        f"tf32={os.environ.get(TF32_OVERRIDE, 'unset')} "
        f"builder_optimization_level={settings.trt_builder_optimization_level} "
        f"workspace_mb={settings.trt_workspace_mb}"
    )


def _configured_cache_dir(settings: ModelSettings) -> Path:
    return Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()


def _open_session(
    ort: ModuleType,
    path: Path,
    options: Any,
    providers: list[tuple[str, dict[str, Any]]],
    failed: list[tuple[str, str]] | None = None,
) -> Any:
    """An InferenceSession on the first provider list that starts, dropping failing providers.

    failed: providers already left out, with the reason, to be reported with the others.
    """
    remaining = list(providers)
    failed = list(failed or [])
    emptied: set[str] = set()
    while True:
        names = [name for name, _ in remaining]
        error: Exception | None = None
        session: Any = None
        with ort_log.captured() as output:
            try:
                # enable_fallback=0: onnxruntime would retry on its own with default provider
                # options (TF32 on); older versions ignore the keyword, see below.
                session = ort.InferenceSession(
                    str(path), sess_options=options, providers=remaining, enable_fallback=0
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                error = exc
        said = str(error) if error is not None else "\n".join(f.error for f in output.fallbacks)
        mended = _mended(ort, path, remaining, said, emptied)
        if mended is not None:
            remaining = mended
            continue
        if error is not None:
            message = _short_error(error)
            if _is_model_problem(message) or names[0] == CPU:
                _report(failed, None)
                raise ModelError(f"{path}: cannot load the model: {message}") from error
            reason = output.provider_problem(names[0]) or ort_log.short_ort_error(str(error))
            if len(remaining) == 1:
                _report(failed, None)
                raise ModelError(f"{path}: {names[0]} did not start: {reason}") from error
            failed.append((names[0], reason))
            remaining = remaining[1:]
            continue
        if output.fallbacks:
            # An onnxruntime without enable_fallback fell back by itself: its session lacks our
            # provider options, so open our own without the provider that failed.
            reason = output.provider_problem(names[0]) or "onnxruntime could not start it"
            if len(remaining) == 1:
                _report(failed, None)
                raise ModelError(f"{path}: {names[0]} did not start: {reason}")
            failed.append((names[0], reason))
            remaining = remaining[1:]
            continue
        started: list[str] = list(session.get_providers())
        for name in names:
            if name not in started:
                reason = output.provider_problem(name) or "onnxruntime left it out of the session"
                failed.append((name, reason))
        _report(failed, started[0])
        if hasattr(session, "disable_fallback"):
            # At run time too: an EP failure must surface, not swap in default options.
            session.disable_fallback()
        return session


def _mended(
    ort: ModuleType,
    path: Path,
    providers: list[tuple[str, dict[str, Any]]],
    error: str,
    emptied: set[str],
) -> list[tuple[str, dict[str, Any]]] | None:
    """The provider list to try again after a session error that other options avoid, with a
    warning saying what changed; None when the error is not one of those.

    An option this onnxruntime does not know (a newer one on an older Jetson build) is left
    out, as is prefer_nhwc in a build without NHWC kernels; a refused CUDA graph capture or
    TensorRT profiles (TensorRT takes part of the model) run without them; a cached engine
    TensorRT cannot load is removed, once per folder.
    """
    unknown = _UNKNOWN_OPTION.search(error)
    if unknown is not None:
        key = unknown["cuda"] or unknown["trt"]
        for name, options in providers:
            if key in options:
                return _leave_out(ort, path, providers, name, key)
    if NHWC_UNSUPPORTED in error and "prefer_nhwc" in dict(providers).get(CUDA, {}):
        log.warning(
            "%s: this onnxruntime build has no NHWC CUDA kernels: the CUDA provider runs "
            "without model.cuda_prefer_nhwc",
            path,
        )
        return _without_option(providers, CUDA, ("prefer_nhwc",))
    if any(marker in error for marker in GRAPH_CAPTURE_REFUSED):
        without_graphs = _without_graphs(providers)
        if without_graphs is not None:
            log.warning("%s runs without CUDA graphs: %s", path, ort_log.short_ort_error(error))
            return without_graphs
    trt_options = dict(providers).get(TENSORRT, {})
    if PROFILES_REFUSED in error and PROFILE_OPTIONS[0] in trt_options:
        unprofiled = re.search(r"has no associated shape profiles provided: *(.+)", error)
        log.warning(
            "%s: TensorRT takes only part of the model, whose parts need profiles of their own "
            "(%s): running it with the profiles TensorRT sets from the shapes it meets",
            path,
            unprofiled[1].strip() if unprofiled else ort_log.short_ort_error(error),
        )
        return _without_option(providers, TENSORRT, PROFILE_OPTIONS)
    folder = trt_options.get("trt_engine_cache_path")
    if STALE_ENGINE in error and folder is not None and folder not in emptied:
        emptied.add(folder)
        log.warning(
            "%s: TensorRT cannot load its cached engine (built by another TensorRT?): "
            "removing %s and building it again",
            path,
            folder,
        )
        engine_cache.empty(Path(folder))
        return providers
    return None


def without_tensorrt(ort: ModuleType, settings: ModelSettings) -> ModelSettings | None:
    """settings asking for the providers they ask for but TensorRT (those this onnxruntime
    offers); None when that leaves none."""
    requested = list(PROVIDER_BY_NAME) if settings.providers == "auto" else settings.providers
    available = ort.get_available_providers()
    rest = [
        short
        for short in requested
        if short != "tensorrt" and PROVIDER_BY_NAME.get(short) in available
    ]
    return settings.model_copy(update={"providers": rest}) if rest else None


def _without_option(
    providers: list[tuple[str, dict[str, Any]]], provider: str, keys: Sequence[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The provider list with `keys` left out of `provider`'s options."""
    return [
        (name, {k: v for k, v in options.items() if name != provider or k not in keys})
        for name, options in providers
    ]


def _without_graphs(
    providers: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]] | None:
    """The provider list without graph capture options; None when none asked for it."""
    stripped = providers
    for name, key in GRAPH_OPTIONS.items():
        stripped = _without_option(stripped, name, (key,))
    return None if stripped == providers else stripped


def _report(failed: list[tuple[str, str]], running: str | None) -> None:
    """One warning line per provider that did not start."""
    for name, reason in failed:
        if running is None:
            log.warning("%s did not start (%s)", name, reason)
        else:
            log.warning("%s did not start (%s); %s runs instead", name, reason, running)


def _is_model_problem(message: str) -> bool:
    markers = ("INVALID_PROTOBUF", "Protobuf parsing failed", "INVALID_GRAPH", "NO_SUCHFILE")
    return any(marker in message for marker in markers)


def _short_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
