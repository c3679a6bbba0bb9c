"""mkdocs hooks: the reference pages generated from the code at build time.

`reference/cli.md` walks the `tideline` command (typer's click command), and
`reference/configuration.md` renders the settings class and the project file's JSON Schema.
Neither is committed; both are built anew by every `mkdocs build`. The hooks also give
mkdocstrings a source tree it can read: installed, `tideline.features` lives in `features/`
(setuptools' package-dir), a layout griffe cannot follow, so the build links the packages into a
temporary `tideline/` tree and adds it to the Python handler's paths.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
import shutil
import tempfile
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.tideline")
ROOT = Path(__file__).resolve().parent.parent
CLI_PAGE = "reference/cli.md"
CONFIG_PAGE = "reference/configuration.md"
_TREE: Path | None = None


# -- a source tree griffe can read -----------------------------------------------------------

@event_priority(100)  # before mkdocstrings reads its handlers' options
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    global _TREE
    if _TREE is None:
        _TREE = Path(tempfile.mkdtemp(prefix="tideline-docs-"))
        package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
            "setuptools"]["package-dir"]
        for package, directory in sorted(package_dirs.items()):
            target = _TREE.joinpath(*package.split("."))
            if package == "tideline":
                target.mkdir(parents=True)
                for item in (ROOT / directory).iterdir():
                    (target / item.name).symlink_to(item)
            else:
                target.symlink_to(ROOT / directory, target_is_directory=True)
    plugin = config.plugins.get("mkdocstrings")
    if plugin is not None:
        python = plugin.config.setdefault("handlers", {}).setdefault("python", {})
        paths = python.setdefault("paths", [])
        if str(_TREE) not in paths:
            paths.insert(0, str(_TREE))
    return config


def on_shutdown() -> None:
    global _TREE
    if _TREE is not None:
        shutil.rmtree(_TREE, ignore_errors=True)
        _TREE = None


# -- generated pages -------------------------------------------------------------------------

def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, render in ((CLI_PAGE, cli_reference), (CONFIG_PAGE, configuration_reference)):
        if files.get_file_from_path(uri) is not None:
            raise RuntimeError(f"docs/{uri} is generated at build time; delete the file")
        files.append(File.generated(config, uri, content=render()))
    return files


def cell(text: object) -> str:
    """Text that fits in one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    text = str(text)
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


# -- the CLI ---------------------------------------------------------------------------------

def cli_reference() -> str:
    import typer
    from tideline.deployments.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the `tideline` command itself at build time; `tideline COMMAND --help`",
        "prints the same.",
        "",
    ]

    # typer ships its own copy of click: its classes are not `click`'s, so duck typing
    def walk(command: Any, parent: Any, name: str) -> None:
        ctx = command.context_class(command, info_name=name, parent=parent)
        path = ctx.command_path
        lines.extend([f"## `{path}`", ""])
        if command.help:
            lines.extend([inspect.cleandoc(command.help).replace("\b\n", ""), ""])
        pieces = " ".join(command.collect_usage_pieces(ctx))
        lines.extend(["```", f"{path} {pieces}".rstrip(), "```", ""])
        params = [param for param in command.get_params(ctx)
                  if not getattr(param, "hidden", False) and param.name != "help"]
        if params:
            lines.extend(["| argument or option | type | default | meaning |",
                          "|---|---|---|---|"])
            for param in params:
                lines.append(_param_row(param, ctx))
            lines.append("")
        if hasattr(command, "list_commands"):
            commands = [command.get_command(ctx, sub) for sub in command.list_commands(ctx)]
            listed = [(c.name, c) for c in commands if c is not None and not c.hidden]
            if listed:
                lines.extend(["| command | does |", "|---|---|"])
                for sub_name, sub in listed:
                    anchor = _slug(f"{path} {sub_name}")
                    lines.append(f"| [`{sub_name}`](#{anchor}) | "
                                 f"{cell(sub.get_short_help_str(limit=120))} |")
                lines.append("")
            for sub_name, sub in listed:
                walk(sub, ctx, sub_name)

    walk(root, None, "tideline")
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    # what Python-Markdown's toc makes of a heading such as "`tideline lake log`"
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def _param_type(param: Any) -> str:
    kind = getattr(param, "type", None)
    if kind is not None and getattr(kind, "name", None):
        return str(kind.name)
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    return _annotation(annotation).lower() if annotation is not None else "text"


def _param_row(param: Any, ctx: Any) -> str:
    option = param.param_type_name == "option"
    if option:
        names = ", ".join(code(o) for o in [*param.opts, *param.secondary_opts])
        if param.is_flag and param.secondary_opts:
            names = " / ".join(code(o) for o in [*param.opts, *param.secondary_opts])
    else:
        names = code((param.metavar or param.name or "").upper())
    kind = "flag" if getattr(param, "is_flag", False) else _param_type(param)
    if param.multiple or (param.nargs != 1 and not option):
        kind += ", repeatable"
    default = param.default
    if callable(default):
        shown = "(computed)"
    elif default is None or default == () or default == []:
        shown = "required" if param.required else ""
    elif isinstance(default, bool) and getattr(param, "is_flag", False) and param.secondary_opts:
        shown = code(param.opts[0] if default else param.secondary_opts[0])
    else:
        shown = code(", ".join(map(str, default)) if isinstance(default, list | tuple)
                     else default)
    help_text = getattr(param, "help", None) or ""
    envvar = getattr(param, "envvar", None)
    if envvar:
        help_text += f" (env {code(envvar)})"
    return f"| {names} | {cell(kind)} | {cell(shown)} | {cell(help_text)} |"


# -- configuration ---------------------------------------------------------------------------

def configuration_reference() -> str:
    from tideline.core.settings import Settings

    lines = [
        "# Configuration reference",
        "",
        "Generated at build time from the settings class (`tideline.core.settings.Settings`)",
        "and the project file's JSON Schema (`tideline schema`). How the sources of a setting",
        "take precedence over each other is in [the project file](../project.md).",
        "",
        "## Settings",
        "",
        "Each setting is read from its `TIDELINE_*` environment variable, or from the project",
        "file's `settings` (lower-case name) and the chosen profile.",
        "",
    ]
    docs = _attribute_docstrings(Settings)
    for name, field in Settings.model_fields.items():
        env = f"TIDELINE_{name.upper()}"
        description = field.description or docs.get(name, "")
        lines.extend([
            f"### `{name}`",
            "",
            f"- environment: `{env}`",
            f"- type: {code(_annotation(field.annotation))}",
            f"- default: {_default(field)}",
            "",
        ])
        if description:
            lines.extend([inspect.cleandoc(description), ""])
    lines.extend(_project_schema_section())
    return "\n".join(lines) + "\n"


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """`name: type = value` followed by a string literal, in the class body and its bases'."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in zip(body, body[1:], strict=False):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                found[stmt.target.id] = after.value.value
    return found


def _annotation(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_annotation(arg) for arg in args)
    if origin is typing.Annotated:
        return _annotation(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_annotation(arg) for arg in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    from pydantic import ByteSize, SecretStr
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()  # a default in the code, not a secret
    if isinstance(value, ByteSize):
        value = value.human_readable(separator=" ")
    return code(value)


def _project_schema_section() -> list[str]:
    try:
        from tideline.deployments.project import project_schema
    except ImportError as exc:
        # a warning fails `mkdocs build --strict`: the reference must not go quietly missing
        log.warning("the project file's schema is missing from the configuration reference: "
                    "cannot import tideline.deployments.project.project_schema (%s)", exc)
        return []
    return render_schema(project_schema())


# Where the objects of the project file's schema are declared, for the fields whose schema has
# no description (a dataclass's attribute docstrings do not reach a model made from it)
DECLARED_IN = ("tideline.ingestion.sources", "tideline.ingestion.contracts",
               "tideline.features.definitions", "tideline.models.labels",
               "tideline.models.spec")
DECLARED_AS = {"FeatureSource": "Source", "View": "FeatureView", "Label": "ChurnLabel",
               "Model": "ModelSpec"}


def _declared_docs(name: str) -> dict[str, str]:
    import importlib

    wanted = DECLARED_AS.get(name, name)
    for module in DECLARED_IN:
        cls = getattr(importlib.import_module(module), wanted, None)
        if isinstance(cls, type):
            return _attribute_docstrings(cls)
    return {}


def render_schema(schema: dict[str, Any]) -> list[str]:
    """Each top-level key of the project file, then every definition its values use."""
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    lines = [
        "## The project file",
        "",
        "`tideline.yaml`: the top-level keys, then the objects their values are made of.",
        "",
        "| key | type | required | meaning |",
        "|---|---|---|---|",
    ]
    properties = schema.get("properties", {})
    for key, spec in properties.items():
        lines.append(f"| [`{key}`](#key-{_anchor(key)}) | {cell(_type(spec))} | "
                     f"{'yes' if key in required else 'no'} | "
                     f"{cell(_first_sentence(_description(spec, defs)))} |")
    lines.append("")
    rendered: set[str] = set()
    for key, spec in properties.items():
        lines.extend([f"### `{key}` {{#key-{_anchor(key)}}}", ""])
        description = _description(spec, defs)
        if description:
            lines.extend([description, ""])
        default = f"; default {code(json.dumps(spec['default']))}" if "default" in spec else ""
        lines.extend([f"Type: {cell(_type(spec))}{default}", ""])
        for name in _refs(spec, defs):
            if name in rendered:
                continue
            rendered.add(name)
            lines.extend(_definition(name, defs[name]))
    return lines


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = _ref_name(spec["$ref"])
        return f"[{name}](#def-{_anchor(name)})"
    for union in ("anyOf", "oneOf"):
        if union in spec:
            return " or ".join(dict.fromkeys(_type(option) for option in spec[union]))
    if "allOf" in spec and len(spec["allOf"]) == 1:
        return _type(spec["allOf"][0])
    if "const" in spec:
        return code(json.dumps(spec["const"]))
    if "enum" in spec:
        return " or ".join(code(json.dumps(value)) for value in spec["enum"])
    kind = spec.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        if "prefixItems" in spec:
            return f"[{', '.join(_type(item) for item in spec['prefixItems'])}]"
        items = spec.get("items")
        return f"list of {_type(items)}" if items else "list"
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"mapping of name to {_type(spec['additionalProperties'])}"
    if kind == "string" and "format" in spec:
        return f"string ({spec['format']})"
    if kind == "string" and "pattern" in spec:
        return f"string matching {code(spec['pattern'])}"
    return kind or "any"


def _description(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    text = spec.get("description")
    if text is None and "$ref" in spec:
        text = defs.get(_ref_name(spec["$ref"]), {}).get("description")
    return inspect.cleandoc(text) if text else ""


def _first_sentence(text: str) -> str:
    first = text.split("\n\n", 1)[0]
    return " ".join(first.split())


def _refs(spec: Any, defs: dict[str, Any], seen: list[str] | None = None) -> list[str]:
    """Every definition `spec` uses, directly or through other definitions, in first-use
    order."""
    seen = [] if seen is None else seen
    if isinstance(spec, dict):
        if "$ref" in spec:
            name = _ref_name(spec["$ref"])
            if name not in seen and name in defs:
                seen.append(name)
                _refs(defs[name], defs, seen)
        for value in spec.values():
            if isinstance(value, dict | list):
                _refs(value, defs, seen)
    elif isinstance(spec, list):
        for value in spec:
            _refs(value, defs, seen)
    return seen


def _definition(name: str, spec: dict[str, Any]) -> list[str]:
    title = spec.get("title", name)
    lines = [f"#### {title} {{#def-{_anchor(name)}}}", ""]
    if spec.get("description"):
        lines.extend([inspect.cleandoc(spec["description"]), ""])
    properties = spec.get("properties")
    if name == "Settings":
        lines.extend(["The fields of [the settings](#settings) above, by their lower-case names "
                      "(less `project` and `profile`, which choose the file).", ""])
        return lines
    if not properties:
        lines.extend([f"Type: {cell(_type(spec))}", ""])
        return lines
    required = set(spec.get("required", ()))
    docs = _declared_docs(name)
    lines.extend(["| field | type | required | default | meaning |", "|---|---|---|---|---|"])
    for field, body in properties.items():
        default = code(json.dumps(body["default"])) if "default" in body else ""
        meaning = body.get("description") or docs.get(field, "")
        lines.append(f"| `{field}` | {cell(_type(body))} | "
                     f"{'yes' if field in required else 'no'} | {cell(default)} | "
                     f"{cell(meaning)} |")
    lines.append("")
    return lines
