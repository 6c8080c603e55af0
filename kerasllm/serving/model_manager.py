"""`ModelManager`: which versions of which models serve, kept in step with disk.

Like TF Serving's file-system source and availability-preserving policy:

- Each model's base path is scanned every `poll_seconds`; version folders are
  all-digit names (a hidden staging folder such as `.3.tmp-x` is ignored).
  A base path that is itself a kerasllm model directory is version 1.
- A version the policy wants is loaded and warmed up in the background; it
  takes traffic only once AVAILABLE. A version the policy no longer wants is
  unloaded only after a wanted one is AVAILABLE, so a swap never leaves the
  model without a servable. Requests already holding the old servable finish.
- A version that fails to load is reported (state END, error_code UNKNOWN,
  the error message) and excluded from the policy, so it never replaces a
  working version. It is retried only when its folder's contents change.
- Nothing outside a base path is read: a version folder whose real path
  (symlinks resolved) leaves the base path is refused.
- `add_servable` serves an object built in memory (a constellation of
  models, say) under a name of its own, as version 1, beside the scanned ones.
"""

import dataclasses
import logging
import pathlib
import re
import threading
import time
from typing import Dict

from kerasllm.serving.errors import invalid, not_found
from kerasllm.serving.servables import is_model_dir, load_servable

log = logging.getLogger("kerasllm.serving")

# TF Serving's ModelVersionStatus states.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass
class VersionState:
    version: int
    path: pathlib.Path
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    servable: object = None
    stamp: tuple = ()

    def status_json(self):
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


def _stamp(path):
    """What changes when a version folder's contents are replaced."""
    try:
        stats = [p.stat() for p in [path, *sorted(path.iterdir())]]
    except OSError:
        return ()
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


class ModelManager:
    """Loads, warms up, swaps and unloads model versions.

    Args:
        specs: a list of `kerasllm.serving.model_config.ModelSpec`.
        poll_seconds: seconds between scans of the base paths (0: scan only
            at `start` and on `poll()`). Defaults to `1.0`.
        wrap: called with each loaded servable before it takes traffic
            (the server attaches its batcher here). Defaults to none.
        jit_compile: compile model directories' decode programs with XLA.
    """

    def __init__(self, specs, *, poll_seconds=1.0, wrap=None, jit_compile=True):
        self.specs = {spec.name: spec for spec in specs}
        self.poll_seconds = poll_seconds
        self.wrap = wrap
        self.jit_compile = jit_compile
        self._versions: Dict[str, Dict[int, VersionState]] = {name: {} for name in self.specs}
        self._held = set()  # names added with `add_servable`
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = None
        self._poll_lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    def start(self, background=True):
        """Scan once (loading the first versions before returning), then poll."""
        self.poll()
        if background and self.poll_seconds:
            self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 (keep polling; each failure is logged)
                log.exception("model scan failed")

    def add_servable(self, name, servable):
        """Serve `servable` as version 1 of `name`, now and until `close`.

        For servables that no base path holds: it warms up and goes through
        `wrap` like a loaded version, and no scan ever replaces it.
        """
        from kerasllm.serving.model_config import check_model_name

        check_model_name(name)
        with self._lock:
            if name in self.specs or name in self._held:
                raise ValueError(f"A model named {name!r} is already served; pick another name.")
        servable.warmup()
        if self.wrap is not None:
            servable = self.wrap(None, 1, servable) or servable
        with self._lock:
            self._held.add(name)
            self._versions[name] = {1: VersionState(1, None, AVAILABLE, servable=servable)}

    # ------------------------------------------------------------ scanning

    def version_paths(self, spec):
        """`{version: path}` found under a model's base path."""
        base = spec.base_path
        if not base.is_dir():
            return {}
        if is_model_dir(base):
            return {1: base}
        found = {}
        for child in base.iterdir():
            if not re.fullmatch(r"\d+", child.name) or not child.is_dir():
                continue
            real = child.resolve()
            if real != base / child.name and not real.is_relative_to(base):
                log.warning("%s points outside %s; not loaded", child, base)
                continue
            found[int(child.name)] = child
        return found

    def poll(self):
        """One scan of every base path: load new versions, unload retired ones."""
        with self._poll_lock:
            for spec in self.specs.values():
                self._poll_model(spec)

    def _poll_model(self, spec):
        on_disk = self.version_paths(spec)
        with self._lock:
            states = self._versions[spec.name]
            for version, path in on_disk.items():
                state = states.get(version)
                if state is not None and state.error_code != "OK" and state.stamp != _stamp(path):
                    del states[version]  # a failed version's folder changed: retry it
            failed = {v for v, s in states.items() if s.error_code != "OK"}
            wanted = spec.wanted(set(on_disk) - failed)
        for version in wanted:
            with self._lock:
                if version in states:
                    continue
                state = states[version] = VersionState(version, on_disk[version], LOADING)
            self._load(spec, state)
        with self._lock:
            serving = [v for v in wanted if states.get(v) and states[v].state == AVAILABLE]
            retire = [
                v
                for v, s in states.items()
                if s.state == AVAILABLE and (v not in on_disk or (serving and v not in wanted))
            ]
            for version in retire:
                self._unload(spec.name, states[version])

    def _load(self, spec, state):
        stamp = _stamp(state.path)
        started = time.monotonic()
        try:
            servable = load_servable(state.path, jit_compile=self.jit_compile)
            servable.warmup()
            if self.wrap is not None:
                servable = self.wrap(spec, state.version, servable) or servable
        except Exception as error:  # noqa: BLE001 (any failure is reported, not raised)
            log.error("model %s version %s failed to load: %s", spec.name, state.version, error)
            with self._lock:
                state.state, state.error_code = END, "UNKNOWN"
                state.error_message = f"{type(error).__name__}: {error}"
                state.stamp = stamp
            return
        with self._lock:
            state.servable, state.state, state.stamp = servable, AVAILABLE, stamp
        log.info(
            "model %s version %s available (%.1f s)", spec.name, state.version,
            time.monotonic() - started,
        )

    def _unload(self, name, state):
        state.state = UNLOADING
        servable, state.servable = state.servable, None
        if servable is not None:
            servable.close()
        state.state = END
        log.info("model %s version %s unloaded", name, state.version)

    # ------------------------------------------------------------ lookups

    def names(self):
        return list(self.specs) + sorted(self._held)

    def _states(self, name):
        if name not in self.specs and name not in self._held:
            raise not_found(f"Could not find any versions of model {name}")
        return self._versions[name]

    def status(self, name, version=None, label=None):
        """TF Serving's `model_version_status` list for a model (or one version)."""
        with self._lock:
            states = self._states(name)
            if label is not None:
                version = self._label_version(name, label)
            if version is not None:
                state = states.get(int(version))
                if state is None:
                    raise not_found(f"Could not find version {version} of model {name}")
                return [state.status_json()]
            if not states:
                raise not_found(f"Could not find any versions of model {name}")
            return [states[v].status_json() for v in sorted(states, reverse=True)]

    def _label_version(self, name, label):
        labels = self.specs[name].labels if name in self.specs else {}
        if label not in labels:
            raise not_found(f"Unrecognized servable version label: {label}")
        return labels[label]

    def get(self, name, version=None, label=None):
        """`(version, servable)` for a request; NOT_FOUND names what was asked."""
        with self._lock:
            if name not in self.specs and name not in self._held:
                raise not_found(f"Servable not found for request: Latest({name})")
            states = self._versions[name]
            if label is not None:
                version = self._label_version(name, label)
            if version is not None:
                try:
                    version = int(version)
                except (TypeError, ValueError):
                    raise invalid(f"A version is an integer. Received: {version!r}") from None
                state = states.get(version)
                if state is None or state.state != AVAILABLE:
                    raise not_found(f"Servable not found for request: Specific({name}, {version})")
                return version, state.servable
            available = [v for v, s in states.items() if s.state == AVAILABLE]
            if not available:
                raise not_found(f"Servable not found for request: Latest({name})")
            version = max(available)
            return version, states[version].servable

    def available(self, name):
        with self._lock:
            return sorted(v for v, s in self._versions.get(name, {}).items() if s.state == AVAILABLE)

    def close(self):
        self.stop()
        with self._lock:
            for name, states in self._versions.items():
                for state in states.values():
                    if state.state == AVAILABLE:
                        self._unload(name, state)
