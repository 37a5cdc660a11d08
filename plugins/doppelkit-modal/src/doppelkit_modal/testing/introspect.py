"""Reading a decorated Modal function's configuration offline, for tests.

``fn.info()`` is public and answers GPU, timeout, retries, volumes, secrets, regions and
concurrency without a network call for a locally defined function. What it leaves out —
autoscaling (``min_containers``, ``max_containers``, ``scaledown_window``), the retry backoff,
the memory-snapshot flag — only reaches Modal's ``FunctionCreate`` request: it is read from the
loader's closure. Image layers are read the same way. These helpers use modal's private
internals, hence the plugin's ``modal>=1.6,<1.7`` pin: a new minor must pass these tests first.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def impl(obj: Any) -> Any:
    """The object behind modal's synchronicity wrapper (``modal.Function`` → ``_Function``)."""
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


def service_function(cls: Any) -> Any:
    """A class's service function: where its spec and info live."""
    return impl(cls)._get_class_service_function()


def spec_of(obj: Any) -> Any:
    """The function (or a class's service function) whose spec describes ``obj``."""
    target = impl(obj)
    return target._get_class_service_function() if hasattr(target, "_get_class_service_function") else target


def info(obj: Any) -> Any:
    """``modal.types.FunctionInfo`` of a function or class (offline)."""
    return spec_of(obj)._function_info


def closure(obj: Any) -> dict[str, Any]:
    """The variables the loader closes over: what goes into ``FunctionCreate``."""
    load = spec_of(obj)._load
    return dict(
        zip(load.__code__.co_freevars, (c.cell_contents for c in load.__closure__ or ()), strict=True)
    )


def env_of(obj: Any) -> dict[str, str]:
    """The ``env=`` given at decoration (modal turns it into a ``Secret.from_dict``)."""
    merged: dict[str, str] = {}
    for secret in spec_of(obj)._spec.secrets:
        load = impl(secret)._load
        cells = dict(
            zip(load.__code__.co_freevars, (c.cell_contents for c in load.__closure__ or ()), strict=True)
        )
        values = next(
            (v() for v in cells.values() if callable(v) and getattr(v, "__name__", "") == "_load_env_dict"),
            None,
        )
        if isinstance(values, dict):
            merged.update({str(k): str(v) for k, v in values.items() if v is not None})
    return merged


def secret_names(obj: Any) -> list[str]:
    """The named Secrets attached (``Secret.from_name``), in order."""
    return [
        s[len("modal.Secret.from_name('") : -2]
        for s in info(obj).secrets
        if s.startswith("modal.Secret.from_name(")
    ]


def image_layers(image: Any, builder_version: str = "2025.06") -> list[dict[str, Any]]:
    """An image's layers, oldest first: ``{"kind": "build", "commands": [...]}`` or
    ``{"kind": "mount", "files": [remote paths]}``."""
    layers: list[dict[str, Any]] = []
    current: Any = impl(image)
    while current is not None:
        load = current._load
        cells = dict(
            zip(load.__code__.co_freevars, (c.cell_contents for c in load.__closure__ or ()), strict=True)
        )
        if "mount" in cells:
            files = sorted(
                str(remote) for entry in cells["mount"].entries for _, remote in entry.get_files_to_upload()
            )
            layers.append({"kind": "mount", "files": files})
            current = cells["base_image"]
        else:
            dockerfile = cells.get("dockerfile_function")
            spec = dockerfile(builder_version) if dockerfile else None
            layers.append({"kind": "build", "commands": list(spec.commands) if spec else []})
            bases = cells.get("base_images") or {}
            current = next(iter(bases.values()), None)
    return list(reversed(layers))


def materialize(image: Any, root: Path) -> list[str]:
    """Copy every file the image's local layers would upload to ``root`` + its remote path."""
    written = []
    current: Any = impl(image)
    while current is not None:
        load = current._load
        cells = dict(
            zip(load.__code__.co_freevars, (c.cell_contents for c in load.__closure__ or ()), strict=True)
        )
        if "mount" not in cells:
            bases = cells.get("base_images") or {}
            current = next(iter(bases.values()), None)
            continue
        for entry in cells["mount"].entries:
            for local, remote in entry.get_files_to_upload():
                target = root / str(remote).lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(local, target)
                written.append(str(remote))
        current = cells["base_image"]
    return sorted(written)


def exit_local(obj: Any) -> None:
    """Run a local class instance's ``@modal.exit`` methods (``.local()`` never does)."""
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    instance = obj._cached_user_cls_instance()
    for method in _find_callables_for_obj(instance, _PartialFunctionFlags.EXIT).values():
        method()
