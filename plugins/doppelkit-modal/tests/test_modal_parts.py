"""The modal backend's smaller parts: the Backend contract, the container side's Volume
handling, hosting checks, the remote engine, the forget hooks, steps by reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modal_testkit import validated

import doppelkit_modal.sides as sides
from doppelkit.errors import UserError
from doppelkit.home import Home
from doppelkit.interfaces import Backend, DetachingBackend
from doppelkit.pipeline import build_context
from doppelkit.plugins import default_plugin_manager
from doppelkit.testing.contracts import BackendContract
from doppelkit_modal import hosting
from doppelkit_modal.backend import ModalBackend, step_reference
from doppelkit_modal.config import ModalConfig
from doppelkit_modal.engine_proxy import RemoteEngine
from doppelkit_modal.remote import resolve_step, warm_up
from doppelkit_modal.testing import LocalModal
from doppelkit_modal.testing.introspect import info

pytestmark = pytest.mark.filterwarnings("ignore:.*will not have access to the mounted Volume:UserWarning")


def make_backend(modal: LocalModal, home: Path, *extra: str) -> ModalBackend:
    run = validated([*modal.overrides(), f"home={home}", *extra])
    backend = run["backend"].component(
        run["backend"].config, build_context(run, default_plugin_manager().hook)
    )
    assert isinstance(backend, ModalBackend)
    return backend


class TestModalBackendContract(BackendContract):
    """Steps the backend has no special place for run in the job function (``.local()`` here)."""

    @pytest.fixture
    def backend(self, modal: LocalModal, tmp_path: Path) -> Backend:
        return make_backend(modal, tmp_path / "home")

    def test_a_step_travels_by_reference(self, backend: ModalBackend, modal: LocalModal) -> None:
        assert backend.run(pow, 2, 10) == 1024
        assert "call builtins:pow" in modal.calls
        assert isinstance(backend, DetachingBackend)


def test_steps_travel_by_module_and_name() -> None:
    assert step_reference(json.dumps) == "json:dumps" and resolve_step("json:dumps") is json.dumps
    assert resolve_step("doppelkit.steps:train").__name__ == "train"
    with pytest.raises(UserError, match="not a module-level function"):
        step_reference(lambda: None)


def test_device_follows_the_training_gpu(modal: LocalModal, tmp_path: Path) -> None:
    assert make_backend(modal, tmp_path / "h").device == "cuda"
    assert make_backend(modal, tmp_path / "h", "backend.train_gpu=null").device == "cpu"


def test_a_local_home_at_the_mount_path_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = ModalConfig(mount_path=str(tmp_path))
    monkeypatch.delenv("MODAL_IS_REMOTE", raising=False)
    assert sides.current_harness() is None
    with pytest.raises(UserError, match="is backend.mount_path"):
        sides.inside(config, tmp_path)
    assert sides.inside(config, tmp_path / "elsewhere") is False
    monkeypatch.setenv("MODAL_IS_REMOTE", "1")
    assert sides.inside(config, tmp_path / "anything") is True
    assert isinstance(
        sides.container_side({"backend": {"name": "modal"}, "home": "/x"}), sides.ModalContainerSide
    )


def test_without_the_harness_local_bodies_refuse_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_IS_REMOTE", raising=False)
    with pytest.raises(RuntimeError, match="local_modal"):
        sides.container_side({"backend": {"name": "modal"}, "home": "/x"})


class FakeVolume:
    def __init__(self, fail: bool = False) -> None:
        self.reloads = self.commits = 0
        self.fail = fail

    def reload(self) -> None:
        if self.fail:
            raise RuntimeError("there are open files preventing the operation")
        self.reloads += 1

    def commit(self) -> None:
        self.commits += 1


def test_the_container_side_reloads_at_most_every_interval_and_survives_open_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    side = sides.ModalContainerSide(ModalConfig(reload_interval=3600))
    volume = FakeVolume()
    monkeypatch.setattr(side, "_volume", lambda: volume)
    side.reload()
    side.reload()
    assert volume.reloads == 1
    side.reload(force=True)
    assert volume.reloads == 2
    side.commit()
    assert volume.commits == 1
    busy = sides.ModalContainerSide(ModalConfig(reload_interval=0))
    monkeypatch.setattr(busy, "_volume", lambda: FakeVolume(fail=True))
    busy.reload(force=True)  # logged, not raised: the current view keeps serving


def test_forgetting_on_the_volume_commits_it_in_a_deployed_container(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from doppelkit.forget import forget_person
    from doppelkit_modal import plugin

    home = Home.at(tmp_path / "vol")
    (home.datasets("T1", "U1")).mkdir(parents=True)
    (home.datasets("T1", "U1") / "dataset.jsonl").write_text("{}\n")
    commits: list[str] = []
    monkeypatch.setattr(sides.ModalContainerSide, "commit", lambda self: commits.append(self.config.volume))
    run = {"backend": {"name": "modal", "volume": "v", "mount_path": str(home.root)}, "home": str(home.root)}
    monkeypatch.setenv("DOPPELKIT_MODAL_RUN", json.dumps(run))

    monkeypatch.delenv("MODAL_IS_REMOTE", raising=False)
    assert plugin.commit_if_on_volume(home) is False, "not in a container"
    monkeypatch.setenv("MODAL_IS_REMOTE", "1")
    assert plugin.commit_if_on_volume(Home.at(tmp_path / "other")) is False, "another home"
    removed = forget_person(None, home, "T1", "U1")
    assert "dataset" in " ".join(removed) and not home.datasets("T1", "U1").exists()
    assert commits == ["v"], "committed once, after every plugin deleted its files"


# --- hosting ----------------------------------------------------------------------------------------


def test_store_urls() -> None:
    assert hosting.normalize_store_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert hosting.normalize_store_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert hosting.normalize_store_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    hosting.check_store_url("postgresql+psycopg://h/db", from_secret_possible=False)
    hosting.check_store_url(None, from_secret_possible=True)
    with pytest.raises(UserError, match="SQLite"):
        hosting.check_store_url("sqlite:////doppelkit-home/state/doppelkit.db", from_secret_possible=True)


def test_the_web_container_takes_the_store_from_config_then_the_secret() -> None:
    data: dict[str, Any] = {"frontend": {"name": "bolt", "store_url": None}, "home": "/h"}
    resolved = hosting.resolve_store_url(data, "postgres://u:p@db/doppel")
    assert resolved["frontend"]["store_url"] == "postgresql+psycopg://u:p@db/doppel"
    assert data["frontend"]["store_url"] is None, "the caller's data is not changed"
    configured = {"frontend": {"name": "bolt", "store_url": "postgresql+psycopg://cfg/db"}}
    assert hosting.resolve_store_url(configured, "postgres://env/db")["frontend"]["store_url"].endswith(
        "cfg/db"
    )
    with pytest.raises(UserError, match="DOPPELKIT_STORE_URL"):
        hosting.resolve_store_url(data, None)
    chat = {"frontend": {"name": "chat"}}
    assert hosting.resolve_store_url(chat, None) is chat


def test_remote_run_data_puts_home_on_the_volume() -> None:
    config = ModalConfig(mount_path="/vol")
    data = {"home": "/home/me/.doppelkit", "dataset": {"path": "/home/me/x.jsonl", "eval_fraction": 0.1}}
    remote = hosting.remote_run_data(data, config)
    assert remote == {"home": "/vol", "dataset": {"path": None, "eval_fraction": 0.1}}
    assert data["dataset"]["path"] == "/home/me/x.jsonl"


def test_a_hub_id_is_not_mistaken_for_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hosting.check_model({"model": {"name": "meta-llama/Meta-Llama-3-8B-Instruct"}})
    hosting.check_model({"model": {"name": "tiny"}})
    (tmp_path / "org" / "model").mkdir(parents=True)
    with pytest.raises(UserError, match="directory on this machine"):
        hosting.check_model({"model": {"name": "org/model"}})


# --- the remote engine ------------------------------------------------------------------------------


class RecordingHandle:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def reply(self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None) -> list[str]:
        self.calls.append(("reply", (persona, thread, bot_user_id)))
        return ["hello", "there"]

    def stream(self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None) -> Any:
        return iter(["hel", "lo"])

    def personas(self) -> list[dict[str, Any]]:
        return []

    def current_version(self, team: str, user: str) -> str | None:
        self.calls.append(("current_version", (team, user)))
        return "v9"


def test_the_remote_engine_sends_data_and_reads_versions_from_the_volume(tmp_path: Path) -> None:
    from doppelkit.models import Message, Persona, Thread, User

    handle, refreshes = RecordingHandle(), []
    home = Home.at(tmp_path)
    engine = RemoteEngine(handle, home=home, refresh=lambda force=False: refreshes.append(force))
    persona = Persona(team="T1", user=User(id="U1", display_name="ann"))
    thread = Thread(team="T1", channel="C1", ts="1.0", messages=[Message(ts="1.0", user="U2", text="hi")])
    assert engine.reply(persona, thread, bot_user_id="UB") == ["hello", "there"]
    (_, (sent_persona, sent_thread, bot)) = handle.calls[0]
    assert sent_persona["user"]["id"] == "U1" and sent_thread["messages"][0]["text"] == "hi" and bot == "UB"
    assert json.loads(json.dumps(sent_thread)) == sent_thread, "plain JSON data"
    assert "".join(engine.stream(persona, thread)) == "hello"
    assert engine.current_version("T1", "U1") is None and refreshes == [False, True], "unknown: reload now"
    assert engine.personas() == []
    assert not [c for c in handle.calls if c[0] == "current_version"], "read from the Volume, no GPU woken"
    assert RemoteEngine(handle).current_version("T1", "U1") == "v9", "without the Volume: the class answers"
    with pytest.raises(ValueError):
        engine.current_version("../x", "U1")


def test_warm_up_without_a_persona_loads_nothing() -> None:
    class Empty:
        def personas(self) -> list[Any]:
            return []

    assert warm_up(Empty()) == 0.0


# --- the real-deploy smoke script (run by people with a Modal account, never in CI) --------------

SMOKE = Path(__file__).resolve().parents[1] / "scripts" / "smoke_deploy.py"


def test_the_smoke_script_stops_without_credentials(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    result = subprocess.run(
        [sys.executable, str(SMOKE)],
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "modal setup" in result.stderr


def test_the_smoke_scripts_engine_only_deployment_builds(modal: LocalModal, tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke_deploy", SMOKE)
    assert spec is not None and spec.loader is not None
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    smoke.deploy_engine_only(
        [
            f"backend.mount_path={modal.volume}",
            "backend.app_name=doppelkit-smoke-x",
            "backend.web_secrets=[]",
        ],
        tmp_path / "home",
    )
    built = modal.deployment()
    assert built.web is None and built.engine is not None and built.job is not None
    assert info(built.job).secrets == [], "no Secret the smoke run did not create"


def test_a_failing_warm_up_does_not_keep_the_engine_container_from_starting(
    modal: LocalModal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import doppelkit_modal.remote as remote

    def broken(engine: Any) -> float:
        raise RuntimeError("a broken adapter")

    monkeypatch.setattr(remote, "warm_up", broken)
    backend = make_backend(modal, tmp_path / "home", "backend.serve_gpu=null", "backend.web_secrets=[]")
    backend.launcher.deploy(backend._build(None, parts=("engine",)))
    engine = modal.engine_object()
    assert engine.personas.local() == []  # @modal.enter ran and the class serves
    assert engine._cached_user_cls_instance().loaded == 0.0
