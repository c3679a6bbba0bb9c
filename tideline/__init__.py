"""tideline: a feature platform for churn and customer-behaviour models.

One import namespace over the repository's top-level packages: `tideline.core` is `core/`,
`tideline.lake` is `lake/`, `tideline.flows` is `flows/`, and so on. Installed, pyproject.toml's
package-dir puts them inside this package; in a source checkout (the repository root on
`sys.path`, as for pytest or a Ray job's working_dir) they are found beside it.
"""
from pathlib import Path as _Path

_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "core" / "__init__.py").is_file():
    __path__.append(str(_checkout))
