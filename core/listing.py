"""What `polyjepa list` prints, answered without importing a plugin when nothing changed.

Listing components means importing every plugin, and plugins import torch (seconds). The
listing is therefore kept in a small JSON file under the user's cache folder
(`$POLYJEPA_CACHE_DIR`, else `$XDG_CACHE_HOME/polyjepa`, else `~/.cache/polyjepa`), one per
Python environment, under a fingerprint of everything that can change it: polyjepa's version,
the entry points of both plugin groups with their distributions and versions, the
size and modification time of every `.py` file in polyjepa's own packages and in each entry
point's package, and the two plugin-loading environment variables. Any change gives a fresh
fingerprint, and the plugins are imported again. A listing with failures is never kept (the
failing plugin is retried, and its error shown, every time). `polyjepa list --refresh` ignores
the file; code a plugin imports from outside its own package is not fingerprinted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE_ENV = "POLYJEPA_CACHE_DIR"


@dataclass(frozen=True)
class Listing:
    """Installed modalities and components, as plain values.

    Attributes:
        modalities: `[(name, distribution)]`, sorted by name.
        components: `[(qualified name, kind or "any", distribution)]`, sorted by name.
        failures: descriptions of plugins that failed to load.
    """

    modalities: list[tuple[str, str]]
    components: list[tuple[str, str, str]]
    failures: list[str]


def cache_dir() -> Path:
    """The folder of polyjepa's cache files."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polyjepa"


def cache_file() -> Path:
    """This Python environment's listing file (environments differ in what they have installed)."""
    env = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return cache_dir() / f"list-{env}.json"


def _package_files(module: str) -> list[Path]:
    """The `.py` files of the package holding `module` (the module's own file if it is not in
    a package's folder; none if it cannot be found, which loading it will report)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)
    folder = origin.parent if spec.submodule_search_locations or (
        origin.parent / "__init__.py").exists() else None
    return sorted(folder.rglob("*.py")) if folder is not None else [origin]


def fingerprint() -> str:
    """A digest of everything the listing depends on (see the module docstring)."""
    from polyjepa import __version__
    from polyjepa.registry import (
        COMPONENT_GROUP,
        DISABLE_AUTOLOAD_ENV,
        MODALITY_GROUP,
        PLUGINS_ENV,
    )

    parts: list[str] = [__version__, sys.version, os.environ.get(DISABLE_AUTOLOAD_ENV, ""),
                        os.environ.get(PLUGINS_ENV, "")]
    modules = {"polyjepa.encoders"}  # the core components' package
    for group in (MODALITY_GROUP, COMPONENT_GROUP):
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: (e.name, e.value)):
            dist = getattr(ep, "dist", None)
            parts.append(f"{group} {ep.name}={ep.value} "
                         f"{dist.name if dist else '?'} {dist.version if dist else '?'}")
            modules.add(ep.module)
    files = {path for module in sorted(modules) for path in _package_files(module)}
    for path in sorted(files):
        try:
            stat = path.stat()
        except OSError:
            continue
        parts.append(f"{path} {stat.st_size} {stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _from_registry() -> Listing:
    """The listing, found by importing every plugin."""
    from polyjepa.registry import list_components, list_modalities, plugin_failures

    return Listing(
        modalities=sorted(list_modalities().items()),
        components=[(name, comp.kind or "any", comp.origin) for name, comp in list_components()],
        failures=plugin_failures(),
    )


def _read(path: Path, key: str) -> Listing | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != key:
        return None
    try:
        return Listing(modalities=[tuple(row) for row in data["modalities"]],
                       components=[tuple(row) for row in data["components"]], failures=[])
    except (KeyError, TypeError):
        return None


def installed(refresh: bool = False) -> Listing:
    """The installed modalities and components: from the cache file when its fingerprint
    matches (no plugin is imported), else by importing the plugins (and kept when none failed).
    `refresh` skips the file. A cache folder that cannot be written is not an error."""
    from polyjepa.paths import write_atomic

    path, key = cache_file(), fingerprint()
    if not refresh:
        cached = _read(path, key)
        if cached is not None:
            return cached
    listing = _from_registry()
    if not listing.failures:
        blob = {"fingerprint": key, **asdict(listing)}
        try:
            write_atomic(path, json.dumps(blob, indent=1).encode())
        except OSError:
            pass
    return listing
