"""The project file, `tideline.yaml`: where it is found and how it reads. Each layer takes its
own section (ingestion `sources` and `contracts`, features `features`, models `model`, the
settings `settings` and `profiles`); this module knows only the file, not the sections' shapes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from tideline.core.errors import ConfigError

FILE_NAME = "tideline.yaml"
SECTIONS = ("name", "demo", "sources", "contracts", "validation_time", "features", "model",
            "settings", "profiles")
"""The top-level keys a project file may have."""
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class NoProject(ConfigError):
    """No project file was given or found."""

    def __init__(self, where: Path) -> None:
        super().__init__(f"no tideline project in {where} (no {FILE_NAME}, TIDELINE_PROJECT "
                         "unset): `tideline init DIR` starts one, `tideline demo` runs the "
                         "bundled demo")


def find_project(given: str | Path | None = None, where: Path | None = None) -> Path | None:
    """The project file: `given` (a file, or a directory holding `tideline.yaml`), else
    `tideline.yaml` in `where` (the working directory); None when there is none."""
    if given is not None and str(given) != "":
        path = Path(given).expanduser()
        if path.is_dir():
            path = path / FILE_NAME
        if not path.is_file():
            raise ConfigError(f"project file {path} does not exist")
        return path.resolve()
    found = (where or Path.cwd()) / FILE_NAME
    return found.resolve() if found.is_file() else None


def is_project_file(path: str | Path) -> bool:
    """Whether `path` names a project file (rather than a YAML of one section)."""
    return Path(path).name == FILE_NAME


def read_document(path: Path) -> dict[str, Any]:
    """The file's top level, checked for unknown keys; values are not interpolated yet (a
    profile that is not chosen may name variables this machine does not set)."""
    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read project file {path}: {exc}") from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ConfigError(f"project file {path}: the top level must be a mapping of sections "
                          f"({', '.join(SECTIONS)})")
    unknown = sorted(set(body) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"project file {path}: unknown section(s) {', '.join(unknown)}; "
                          f"known: {', '.join(SECTIONS)}")
    return body


def interpolate(value: Any, where: str, environ: dict[str, str] | None = None) -> Any:
    """`value` with `${VAR}` and `${VAR:-default}` in its strings replaced from the
    environment, recursively; an unset variable without a default is an error naming `where`
    (the key path) and the variable."""
    environ = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {k: interpolate(v, f"{where}.{k}", environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}[{i}]", environ) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set (write "
                          f"${{{name}:-default}} for a default)")

    return _VARIABLE.sub(substitute, value)


def section(path: Path, name: str) -> Any:
    """One section of the project file, interpolated; None when the file lacks it. A section
    given as a reference (`module:attribute`, YAML files, comma-separated) has its files
    taken from the file's directory."""
    body = read_document(path)
    if name not in body:
        return None
    value = interpolate(body[name], f"{path.name}: {name}")
    return references(path, value) if isinstance(value, str) else value


def references(path: Path, text: str) -> str:
    """Comma-separated `module:attribute`s and YAML files, the files made absolute from the
    project file's directory."""
    return ",".join(relative_to(path, part.strip()) if part.strip().endswith((".yaml", ".yml"))
                    else part.strip() for part in text.split(",") if part.strip())


def settings_of(path: Path, profile: str | None) -> dict[str, Any]:
    """The settings the file gives: `settings`, overlaid by the chosen profile, interpolated;
    relative `data_dir` taken from the file's directory."""
    body = read_document(path)
    base = body.get("settings") or {}
    profiles = body.get("profiles") or {}
    if not isinstance(base, dict) or not isinstance(profiles, dict):
        raise ConfigError(f"project file {path}: `settings` and `profiles` must be mappings")
    chosen: dict[str, Any] = {}
    if profile:
        if profile not in profiles:
            raise ConfigError(f"project file {path}: no profile {profile!r}; profiles: "
                              f"{', '.join(profiles) or 'none'}")
        chosen = profiles[profile] or {}
        if not isinstance(chosen, dict):
            raise ConfigError(f"project file {path}: profile {profile!r} must be a mapping")
    merged = interpolate({**base, **chosen}, f"{path.name}: settings")
    if "data_dir" in merged:
        merged["data_dir"] = relative_to(path, str(merged["data_dir"]))
    for name in ("project_file", "feature_views", "model_spec"):  # files, or `module:attr`
        if isinstance(merged.get(name), str):
            merged[name] = references(path, merged[name])
    return merged


def relative_to(path: Path, value: str) -> str:
    """A local path or glob of the project file, made absolute from the file's directory;
    URLs (`s3://…`) and absolute paths unchanged."""
    if "://" in value or Path(value).expanduser().is_absolute():
        return value
    return str(path.parent / value)
