"""The image is the code this machine runs: the selected plugins from their source trees (with
package data and entry points), everything else pinned to the installed versions."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from modal_testkit import validated

from doppelkit.plugins import default_plugin_manager
from doppelkit_modal.app import image_env
from doppelkit_modal.config import ModalConfig
from doppelkit_modal.image import (
    ImageRecipe,
    build_image,
    module_distribution,
    normalize,
    resolve_recipe,
    run_distributions,
    ship_filter,
)
from doppelkit_modal.testing.introspect import image_layers, materialize

ROOT = Path(__file__).resolve().parents[3]


def recipe_for(*overrides: str) -> ImageRecipe:
    run = validated(["+backend=modal", *overrides])
    config = run["backend"].config
    assert isinstance(config, ModalConfig)
    names = run_distributions(run, default_plugin_manager().hook)
    return resolve_recipe(names, python_version=config.python_version, env=image_env(config))


@pytest.fixture(scope="module")
def recipe() -> ImageRecipe:
    return recipe_for("frontend=bolt")


def test_components_map_to_their_distributions() -> None:
    assert module_distribution("doppelkit.builtins.backends") == "doppelkit"
    assert module_distribution("doppelkit_lora.serve.engine") == "doppelkit-lora"
    assert module_distribution("doppelkit_slack.bolt.frontend") == "doppelkit-slack"
    assert module_distribution("doppelkit_jsonl") == "doppelkit-jsonl"


def test_only_the_plugins_the_run_uses_go_in(recipe: ImageRecipe) -> None:
    shipped = sorted(d.name for d in recipe.local)
    assert shipped == ["doppelkit", "doppelkit-lora", "doppelkit-modal", "doppelkit-slack"]
    # The jsonl example plugin is installed but registers only a source nobody selected.
    assert "doppelkit-jsonl" not in {normalize(p.split("==")[0]) for p in recipe.pins}
    jsonl = sorted(d.name for d in recipe_for("source=jsonl", "source.path=x.jsonl").local)
    assert "doppelkit-jsonl" in jsonl


def test_third_party_code_is_pinned_to_the_installed_versions(recipe: ImageRecipe) -> None:
    pins = {normalize(p.split("==")[0]): p.split("==")[1] for p in recipe.pins}
    for name in (
        "torch",
        "transformers",
        "peft",
        "slack-bolt",
        "sqlalchemy",
        "pydantic",
        "hydra-core",
        "psycopg",
    ):
        assert pins[name] == metadata.version(name).split("+")[0], name
    assert "psycopg-binary" in pins, "the extra psycopg[binary] is followed"
    assert "modal" not in pins, "Modal provides its own client in the container"
    assert not [p for p in recipe.pins if "+" in p], "no local version labels (+cpu)"
    assert not {"pytest", "ruff", "mypy"} & set(pins), "no dev tools"
    assert all(p.count("==") == 1 for p in recipe.pins)


def test_own_code_ships_with_package_data_and_entry_points(recipe: ImageRecipe) -> None:
    by_name = {d.name: d for d in recipe.local}
    assert by_name["doppelkit"].modules == ["doppelkit"]
    assert by_name["doppelkit-modal"].modules == ["doppelkit_modal"]
    assert by_name["doppelkit"].extra_dirs == {str(ROOT / "configs"): "/root/configs"}
    assert Path(by_name["doppelkit-slack"].dist_info, "entry_points.txt").is_file()


def test_image_layers_base_pins_env_then_local_code(recipe: ImageRecipe) -> None:
    layers = image_layers(build_image(recipe, ["hf_transfer==0.1.8"]))
    assert [layer["kind"] for layer in layers[:3]] == ["build", "build", "build"]
    assert layers[0]["commands"][0].startswith(f"FROM python:{recipe.python_version}")
    install = layers[1]["commands"][-1]
    assert "uv pip install" in install and "torch==" in install and "hf_transfer==0.1.8" in install
    assert "ENV HF_HOME=/doppelkit-home/cache/huggingface" in layers[2]["commands"]
    assert {layer["kind"] for layer in layers[3:]} == {"mount"}, "own code last: edits never rebuild"
    files = {f for layer in layers[3:] for f in layer["files"]}
    assert "/root/doppelkit/steps.py" in files
    assert "/root/configs/doppelkit.yaml" in files and "/root/configs/backend/modal.yaml" in files
    assert "/root/doppelkit_slack/data/sample_workspace.zip" in files, "package data is not dropped"
    assert "/root/doppelkit_modal/remote.py" in files
    assert any(f.endswith(".dist-info/entry_points.txt") and "doppelkit_lora" in f for f in files)
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in files if "/tests/" in f], "the checkout's tests stay here"


def test_a_bad_extra_requirement_fails_before_any_build(recipe: ImageRecipe) -> None:
    from doppelkit.errors import UserError

    with pytest.raises(UserError, match="backend.pip"):
        build_image(recipe, ["not a requirement!!"])


def test_ship_filter() -> None:
    assert ship_filter(Path("__pycache__/x.cpython-311.pyc")) and ship_filter(Path("a/.hidden"))
    assert ship_filter(Path("x.pyc")) and not ship_filter(Path("configs/model/tiny.yaml"))
    assert not ship_filter(Path("data/sample_workspace.zip"))


def test_a_clean_interpreter_runs_doppelkit_from_the_materialized_image(
    recipe: ImageRecipe, tmp_path: Path
) -> None:
    """What the container sees under /root: doppelkit, its configs, and the plugins registered
    through their shipped entry points — with nothing from this checkout on the path."""
    root = tmp_path / "image"
    materialize(build_image(recipe), root)
    # The third-party packages as the image's site-packages would hold them: this
    # environment's, without doppelkit's own (editable) installs.
    installed = Path(next(p for p in sys.path if p.endswith("site-packages")))
    site = tmp_path / "site-packages"
    site.mkdir()
    for entry in installed.iterdir():
        if not entry.name.startswith(("doppelkit", "_editable_impl_doppelkit", "__editable__")):
            (site / entry.name).symlink_to(entry)
    check = textwrap.dedent(
        """
        import sys
        sys.path[:0] = [sys.argv[1], sys.argv[2]]
        import doppelkit
        from doppelkit.config import config_dir
        from doppelkit.plugins import build_registries, default_plugin_manager
        registries = build_registries(default_plugin_manager())
        print(doppelkit.__file__)
        print(config_dir())
        print(",".join(registries.backend.names()), ",".join(registries.engine.names()),
              ",".join(registries.frontend.names()), sep=";")
        """
    )
    # -S: no site-packages (and no editable .pth files); the pinned third-party code comes
    # after the image's /root, as it would from the image's site-packages.
    result = subprocess.run(
        [sys.executable, "-S", "-c", check, str(root / "root"), str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, configs, components = result.stdout.strip().splitlines()
    assert module.startswith(str(root / "root" / "doppelkit"))
    assert configs == str(root / "root" / "configs")
    backends, engines, frontends = components.split(";")
    assert "modal" in backends.split(",") and engines == "peft" and "bolt" in frontends.split(",")
