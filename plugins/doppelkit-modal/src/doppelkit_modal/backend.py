"""``+backend=modal``: each step where it belongs.

==========  ===========================================  ===========================================
step        run from this machine (the CLI)               run inside a Modal container (the bot's job)
==========  ===========================================  ===========================================
ingest      here: the raw export never leaves             there, into the Volume; then committed
train       dataset uploaded, train function on the       committed, then the deployed train function
            GPU (logs stream here), adapter copied back
            with ``backend.download=true``
serve       a web frontend (``frontend=bolt``): the app   —
            deployed, its URL printed; another frontend
            (``chat``): here, replies from an ephemeral
            engine class on the serving GPU
other       the job function, waited for                  in the container
==========  ===========================================  ===========================================

``spawn`` (a :class:`~doppelkit.interfaces.DetachingBackend`) starts a step in the deployed
job function and returns at once: the Slack bot's ``/doppel train`` acknowledges Slack while
the job reads the workspace, trains on the GPU and reports back.

Credentials are checked when the backend is built, before any step — one line and exit status
2 without them, in about a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from doppelkit import steps
from doppelkit.errors import UserError
from doppelkit.interfaces import RunContext, WebFrontend
from doppelkit_modal.config import ModalConfig

T = TypeVar("T")


def step_reference(step: Callable[..., Any]) -> str:
    """A module-level function as ``"module:qualname"``: how a step travels by name."""
    module, qualname = getattr(step, "__module__", None), getattr(step, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise UserError(f"{step!r} is not a module-level function, so it cannot run on Modal")
    return f"{module}:{qualname}"


class ModalBackend:
    """Runs training and serving on Modal (see the module docstring)."""

    name: ClassVar[str] = "modal"
    Config: ClassVar[type[BaseModel]] = ModalConfig

    def __init__(self, config: ModalConfig, context: RunContext) -> None:
        from doppelkit_modal import sides

        self.config = config
        self.context = context
        self.inside = sides.inside(config, context.home.root)
        self._side: sides.ContainerSide | None = None
        self._launcher: sides.Launcher | None = None
        if not self.inside:
            self._launcher = sides.launcher(config)
            self._launcher.check_credentials()

    @property
    def device(self) -> str:
        """Where training runs: ``cuda`` on ``backend.train_gpu``, ``cpu`` without one."""
        return self.config.train_device

    @property
    def side(self) -> Any:
        if self._side is None:
            from doppelkit_modal.sides import container_side

            self._side = container_side(
                {"backend": self.config.model_dump(mode="json"), "home": str(self.context.home.root)}
            )
        return self._side

    @property
    def launcher(self) -> Any:
        assert self._launcher is not None, "the launcher is this machine's side"
        return self._launcher

    # --- Backend ---------------------------------------------------------------------------------

    def run(self, step: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if step is steps.ingest:
            return self._ingest(*args, **kwargs)  # type: ignore[return-value]
        if step is steps.train:
            return self._train(*args, **kwargs)  # type: ignore[return-value]
        if step is steps.serve:
            self._serve(*args, **kwargs)
            return None  # type: ignore[return-value]  # the serve step returns nothing
        if self.inside:
            return step(*args, **kwargs)
        built = self._build(None, parts=("job",))
        result: T = self.launcher.call(built, step_reference(step), list(args), kwargs)
        return result

    def spawn(self, step: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Start ``step`` in the deployed job function; do not wait."""
        reference = step_reference(step)
        if self.inside:
            self.side.spawn(reference, list(args), kwargs)
        else:
            self.launcher.spawn(reference, list(args), kwargs)

    # --- the steps -------------------------------------------------------------------------------

    def _ingest(self, data: dict[str, Any]) -> dict[str, Any]:
        result = steps.ingest(data)
        if self.inside:
            self.side.commit()  # the train function, in another container, reads it next
        return result

    def _train(
        self, data: dict[str, Any], team: str, user: str, *, device: str | None = None
    ) -> dict[str, Any]:
        if self.inside:
            self.side.commit()
            result = self.side.train(data, team, user, device)
            self.side.reload(force=True)  # the new version, for whoever asks next in this container
            return result
        return self._train_from_here(data, team, user, device)

    def _train_from_here(
        self, data: dict[str, Any], team: str, user: str, device: str | None
    ) -> dict[str, Any]:
        from doppelkit import pipeline
        from doppelkit_modal.hosting import check_model, remote_run_data
        from doppelkit_modal.transfer import download_adapter, upload_plan

        check_model(data)
        run, context = steps.rebuild(data, steps.TRAIN_NEEDS)
        persona, paths, report = pipeline.find_dataset(run.with_persona(team, user), context.home)
        console, config = self.context.console, self.config
        plan = upload_plan(context.home, paths, report, config)
        remote = remote_run_data(data, config)
        built = self._build(remote, parts=("train",))
        console.print(
            f"modal: uploading {persona.label}'s dataset ({report.train_examples} examples, "
            f"{report.eval_examples} held out) to Volume {config.volume}",
            highlight=False,
        )
        self.launcher.upload(plan)
        where = f"a {config.train_gpu} GPU" if config.train_gpu else "a CPU container"
        console.print(
            f"modal: training on {where} in app {config.app_name} ({built.recipe.describe()})",
            highlight=False,
        )
        result: dict[str, Any] = dict(self.launcher.train(built, remote, team, user, device))
        location = f"Modal Volume {config.volume}, /{result['adapter_dir']}"
        if not config.download:
            result["location"] = location
            return result
        copied = download_adapter(self.launcher, context.home, team, user, str(result["adapter_dir"]))
        console.print(
            f"modal: copied {result['version']} ({location}) here as {copied.version}", highlight=False
        )
        return {
            **result,
            "version": copied.version,
            "adapter_dir": str(copied.adapter_dir.relative_to(context.home.root)),
        }

    def _serve(self, data: dict[str, Any], *, device: str | None = None) -> None:
        from doppelkit import pipeline

        if self.inside:
            raise UserError("the serve step runs from your machine: `doppelkit serve +backend=modal …`")
        run, context = steps.rebuild(data, steps.SERVE_NEEDS)
        frontend = pipeline.make(run["frontend"], context)
        if isinstance(frontend, WebFrontend):
            self._deploy(data, run, frontend)
        else:
            self._serve_here(data, frontend)

    def _deploy(self, data: dict[str, Any], run: Any, frontend: Any) -> None:
        from doppelkit_modal.hosting import check_model, check_store_url, remote_run_data

        config, console = self.config, self.context.console
        check_model(data)
        if hasattr(frontend.config, "store_url"):
            check_store_url(frontend.config.store_url, from_secret_possible=bool(config.web_secrets))
        self.launcher.check_secrets([*config.secrets, *config.web_secrets])
        if run.selections.get("source") is not None and run["source"].name == "slack_export":
            console.print(
                "modal: note — `/doppel train` in the deployed bot reads the workspace with source=slack "
                "(the Web API); with source=slack_export, train from this machine instead",
                highlight=False,
            )
        built = self._build(remote_run_data(data, config))
        url = self.launcher.deploy(built)
        path = str(getattr(frontend.config, "path", "") or "")
        console.print(f"modal: deployed app {config.app_name} ({built.recipe.describe()})", highlight=False)
        if url:
            console.print(
                f"Request URL for the Slack app (Event Subscriptions and /doppel): {url.rstrip('/')}{path}"
            )
        console.print(
            f"It scales to zero when idle. Stop it with: modal app stop {config.app_name}", highlight=False
        )

    def _serve_here(self, data: dict[str, Any], frontend: Any) -> None:
        """A terminal frontend here, replies from an ephemeral engine class on Modal."""
        from doppelkit_modal.engine_proxy import RemoteEngine
        from doppelkit_modal.hosting import check_model, remote_run_data

        check_model(data)
        config = self.config
        built = self._build(remote_run_data(data, config), parts=("engine",))
        where = f"a {config.serve_gpu} GPU" if config.serve_gpu else "a CPU container"
        self.context.console.print(
            f"modal: starting the engine on {where} (the first start builds the image)…", highlight=False
        )
        with self.launcher.engine_session(built) as handle:
            frontend.serve(RemoteEngine(handle))

    # --- the app ---------------------------------------------------------------------------------

    def _build(
        self, remote_data: dict[str, Any] | None, parts: tuple[str, ...] = ("train", "job", "engine", "web")
    ) -> Any:
        from doppelkit_modal.app import build_app, image_env
        from doppelkit_modal.image import resolve_recipe, run_distributions

        run = self.context.run
        if run is None:
            raise UserError("the modal backend needs the run's configuration (RunContext.run)")
        if remote_data is None:
            from doppelkit_modal.hosting import remote_run_data

            remote_data = remote_run_data(run.to_data(), self.config)
        recipe = resolve_recipe(
            run_distributions(run, self.context.hook),
            python_version=self.config.python_version,
            env=image_env(self.config),
        )
        if "web" in parts and not _has_web_frontend(run):
            parts = tuple(p for p in parts if p != "web")
        return build_app(self.config, remote_data, recipe, parts)


def _has_web_frontend(run: Any) -> bool:
    selection = run.selections.get("frontend")
    if selection is None:
        return False
    return all(callable(getattr(selection.component, m, None)) for m in ("prepare", "asgi_app"))
