"""Registered model versions: validated at start-up, each loaded once per process."""
from __future__ import annotations

import os
import threading

from annotation.manifest import ModelManifest, load_manifest
from config import AnnotationConfig
from exceptions import BadRequest


class ModelRegistry:
    """``[annotation] version_<n> = <folder>`` entries, by version number.

    Manifests and weight files are checked when the registry is made (at
    start-up: a bad one stops it with a ConfigError naming the file); models
    are loaded lazily, on first use, once per process.
    """

    def __init__(self, settings: AnnotationConfig) -> None:
        self.settings = settings
        self.manifests: dict[int, ModelManifest] = {
            number: load_manifest(folder, number)
            for number, folder in sorted(settings.versions.items())}
        self._detectors: dict[int, object] = {}
        self._lock = threading.Lock()

    @property
    def versions(self) -> list[int]:
        return sorted(self.manifests)

    def check(self, version: int, field: str = "auto_anno_version") -> ModelManifest:
        """The manifest of ``version``, or a 400 naming the registered ones."""
        manifest = self.manifests.get(version)
        if manifest is None:
            known = ", ".join(map(str, self.versions)) or "none"
            raise BadRequest({field: f"version {version} is not registered "
                                     f"(registered: {known})"})
        return manifest

    def detector(self, version: int):
        """The detector of ``version``, loaded on first use."""
        detector = self._detectors.get(version)
        if detector is None:
            with self._lock:
                detector = self._detectors.get(version)
                if detector is None:
                    from annotation.detectors import load_detector
                    detector = load_detector(self.check(version), self.device(),
                                             self.settings.threads)
                    self._detectors[version] = detector
        return detector

    def device(self) -> str:
        if self.settings.device != "auto":
            return self.settings.device
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"


# The settings object is kept with its registry so that its id is never reused.
_registries: dict[tuple[int, int], tuple[AnnotationConfig, ModelRegistry]] = {}
_registries_lock = threading.Lock()


def get_registry(settings: AnnotationConfig) -> ModelRegistry:
    """This process's registry for ``settings`` (models are loaded once per process)."""
    key = (os.getpid(), id(settings))
    with _registries_lock:
        if key not in _registries:
            _registries[key] = (settings, ModelRegistry(settings))
        return _registries[key][1]
