"""The image every Modal function runs: the code this machine runs, and the versions it runs with.

What runs remotely must be what runs locally, so the image is not a list of package names
from a README but is read from this environment:

* **Which distributions**: doppelkit, this plugin, the distribution of every component the run
  selects (``source=``, ``formatter=``, ``trainer=``, ``engine=``, ``frontend=``) and of every
  plugin implementing a lifecycle hook (``scrub_message``, ``forget_person``, …: a redaction or
  a "forget me" must behave remotely as it does here). An installed plugin the run does not use
  stays out, and so do its extras.
* **Pins**: the requirement closure of those distributions, walked through the local install
  (markers evaluated for Linux and the image's Python), each pinned ``name==version`` as
  installed here, in one cached ``uv pip install`` layer. A local version label goes
  (``torch==2.13.0+cpu`` becomes ``torch==2.13.0``: the Linux wheel with CUDA). modal itself is
  left out: Modal provides its client in every container.
* **Own code**: a distribution installed from a local directory (editable or not, PEP 610
  ``direct_url.json``) ships as files — its packages with their package data (YAML presets,
  templates, the sample zip: everything but bytecode and dotfiles) and its ``.dist-info`` (so its
  entry points register the plugin remotely), plus the checkout's ``configs/`` for an editable
  doppelkit. Those layers come last and are uploaded when a container starts, so editing code
  never rebuilds the image.

:class:`ImageRecipe` is plain data: tests assert it; :func:`build_image` turns it into a
``modal.Image`` (modal imported only there).
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import importlib.util
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from doppelkit.errors import UserError

if TYPE_CHECKING:
    import modal

    from doppelkit.config import RunConfig

REMOTE_ROOT = "/root"  # on sys.path in every Modal container: add_local_* code lands here
CORE = "doppelkit"
PLUGIN = "doppelkit-modal"
SKIPPED = frozenset({"modal"})  # Modal mounts its own client into every container


class LocalDistribution(BaseModel):
    """A distribution installed from a local directory: shipped as files."""

    name: str
    version: str
    modules: list[str]  # top-level import packages / modules
    dist_info: str  # the local ``*.dist-info`` directory
    extra_dirs: dict[str, str] = {}  # local directory → remote directory


class ImageRecipe(BaseModel):
    """Everything the image is made of, as plain data."""

    python_version: str
    pins: list[str]  # "name==version", third-party and index-installed distributions
    local: list[LocalDistribution]
    env: dict[str, str]

    def describe(self) -> str:
        own = ", ".join(f"{d.name} {d.version}" for d in self.local) or "none"
        return f"Python {self.python_version}; {len(self.pins)} pinned packages; shipped from here: {own}"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- which distributions ------------------------------------------------------------------------


@functools.cache
def _distributions() -> dict[str, metadata.Distribution]:
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and normalize(name) not in found:  # the first on sys.path wins, as for imports
            found[normalize(name)] = dist
    return found


def distribution(name: str) -> metadata.Distribution:
    try:
        return _distributions()[normalize(name)]
    except KeyError:
        raise UserError(
            f"the distribution {name!r} is not installed here, so it cannot go into the image"
        ) from None


def source_root(dist: metadata.Distribution) -> Path | None:
    """The local directory a distribution was installed from (PEP 610), or None."""
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    url = str(json.loads(raw).get("url", ""))
    return Path(url.removeprefix("file://")) if url.startswith("file://") else None


def _importable_from(module: str, dist: metadata.Distribution) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    root = source_root(dist)
    if root is None:
        return True
    locations = list(spec.submodule_search_locations or []) or [spec.origin or ""]
    return any(Path(location).resolve().is_relative_to(root.resolve()) for location in locations if location)


def top_level_modules(dist: metadata.Distribution) -> list[str]:
    """The import names a distribution provides.

    ``top_level.txt`` and ``RECORD`` answer for ordinary installs; an editable install records
    only a ``.pth`` file, so its own name and its entry points' modules are tried too (each kept
    only if it imports from the distribution's source tree).
    """
    names: set[str] = set((dist.read_text("top_level.txt") or "").split())
    for file in dist.files or []:
        first = file.parts[0] if file.parts else ""
        if first and first != ".." and not first.endswith((".dist-info", ".pth", ".data")):
            names.add(first.removesuffix(".py"))
    names.add(normalize(dist.metadata["Name"]).replace("-", "_"))
    names |= {ep.value.split(":")[0].split(".")[0].strip() for ep in dist.entry_points}
    return sorted(
        n for n in names if n.isidentifier() and not n.startswith("_") and _importable_from(n, dist)
    )


def module_distribution(module: str) -> str:
    """The installed distribution that provides the top-level package of ``module``."""
    top = module.split(".")[0]
    for key, dist in _distributions().items():
        cheap = {normalize(dist.metadata["Name"]).replace("-", "_")} | {
            ep.value.split(":")[0].split(".")[0].strip() for ep in dist.entry_points
        }
        if top in cheap and top in top_level_modules(dist):
            return key
    for key, dist in _distributions().items():
        if top in top_level_modules(dist):
            return key
    raise UserError(
        f"cannot tell which installed distribution provides {top!r}; plugins must be installed "
        "(pip install, editable or not) to run on Modal"
    )


def run_distributions(run: RunConfig, hook: Any) -> list[str]:
    """The distributions a run needs remotely (see the module docstring), normalized names."""
    wanted = {normalize(CORE), normalize(PLUGIN)}
    for selection in run.selections.values():
        wanted.add(module_distribution(selection.component.__module__))
    for plugin_module in lifecycle_plugins(hook):
        wanted.add(module_distribution(plugin_module))
    return sorted(wanted)


def lifecycle_plugins(hook: Any) -> list[str]:
    """Modules of the plugins implementing a hook other than ``register_*``."""
    modules: set[str] = set()
    if hook is None:
        return []
    for name, caller in vars(hook).items():
        if name.startswith(("_", "register_")) or not hasattr(caller, "get_hookimpls"):
            continue
        for impl in caller.get_hookimpls():
            module = getattr(impl.plugin, "__name__", None) or type(impl.plugin).__module__
            modules.add(str(module))
    return sorted(modules)


# --- the recipe ---------------------------------------------------------------------------------


def _linux_environment(python_version: str) -> dict[str, str]:
    from packaging.markers import default_environment

    env: dict[str, str] = {str(k): str(v) for k, v in default_environment().items()}
    env.update(
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine="x86_64",
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return env


def strip_local_label(version: str) -> str:
    return version.split("+", 1)[0]


def requirement_closure(names: Iterable[str], python_version: str) -> dict[str, metadata.Distribution]:
    """Every installed distribution ``names`` need (Linux, the image's Python), by normalized name."""
    from packaging.requirements import Requirement

    env = _linux_environment(python_version)
    seen: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in names]
    while todo:
        name, extras = todo.pop()
        key = normalize(name)
        if key in SKIPPED:
            continue
        if key in seen and extras <= extras_seen[key]:
            continue
        dist = distribution(name)
        seen[key] = dist
        extras_seen[key] = extras_seen.get(key, set()) | set(extras)
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({**env, "extra": extra}) for extra in (sorted(extras) or [""])
            ):
                continue
            todo.append((requirement.name, frozenset(requirement.extras)))
    return seen


def resolve_recipe(dist_names: Iterable[str], *, python_version: str, env: dict[str, str]) -> ImageRecipe:
    """Pins for third-party code, files for own code (see the module docstring)."""
    pins: list[str] = []
    local: list[LocalDistribution] = []
    for key, dist in sorted(requirement_closure(dist_names, python_version).items()):
        root = source_root(dist)
        name = dist.metadata["Name"]
        if root is None:
            pins.append(f"{name}=={strip_local_label(dist.version)}")
            continue
        modules = top_level_modules(dist)
        if not modules:
            raise UserError(f"{name} is installed from {root} but provides no importable package to ship")
        extra: dict[str, str] = {}
        if key == normalize(CORE):
            extra.update(_core_configs())
        local.append(
            LocalDistribution(
                name=name,
                version=dist.version,
                modules=modules,
                dist_info=str(Path(str(dist._path))),  # type: ignore[attr-defined]  # PathDistribution
                extra_dirs=extra,
            )
        )
    return ImageRecipe(python_version=python_version, pins=pins, local=local, env=dict(sorted(env.items())))


def _core_configs() -> dict[str, str]:
    """An editable doppelkit keeps ``configs/`` beside the package: ship it beside it remotely."""
    import doppelkit
    from doppelkit.config import config_dir

    configs = config_dir()
    package = Path(doppelkit.__file__).resolve().parent
    if configs.is_relative_to(package):
        return {}  # inside the package (a wheel install): shipped with it
    return {str(configs): f"{REMOTE_ROOT}/{configs.relative_to(package.parent)}"}


def requirements(extra: Iterable[str]) -> list[str]:
    """Extra requirements (``backend.pip``), checked so a typo fails here, not in the image build."""
    from packaging.requirements import InvalidRequirement, Requirement

    checked = []
    for raw in extra:
        try:
            Requirement(raw)
        except InvalidRequirement as exc:
            raise UserError(f"backend.pip: {raw!r} is not a requirement ({exc})") from None
        checked.append(raw)
    return checked


# --- the image ----------------------------------------------------------------------------------


def ship_filter(path: Path) -> bool:
    """What never ships: bytecode, caches and dotfiles. (modal's default for
    ``add_local_python_source`` keeps only ``*.py``: package data such as YAML presets or a
    Jinja template would be lost.)"""
    parts = Path(path).parts
    return path.suffix in (".pyc", ".pyo") or any(
        p == "__pycache__" or (p.startswith(".") and p not in (".", "..")) for p in parts
    )


def build_image(recipe: ImageRecipe, extra_requirements: Iterable[str] = ()) -> modal.Image:
    """The ``modal.Image`` of a recipe: base, pins (one cached layer), env, then own code."""
    import modal

    image = modal.Image.debian_slim(python_version=recipe.python_version)
    wanted = [*recipe.pins, *requirements(extra_requirements)]
    if wanted:
        image = image.uv_pip_install(*wanted)
    image = image.env(recipe.env)
    for dist in recipe.local:
        image = image.add_local_python_source(*dist.modules, ignore=ship_filter)
        image = image.add_local_dir(
            dist.dist_info, f"{REMOTE_ROOT}/{Path(dist.dist_info).name}", ignore=ship_filter
        )
        for source, target in dist.extra_dirs.items():
            image = image.add_local_dir(source, target, ignore=ship_filter)
    return image
