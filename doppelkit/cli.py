"""The ``doppelkit`` command.

``doppelkit [VERB] [OVERRIDES…]``: the verb (default: the whole pipeline) is taken off the
command line, the rest goes to Hydra untouched, so ``--cfg job``, ``--help``, ``-m`` and the
override grammar work as in any Hydra app. ``plugins`` is handled without Hydra.

User mistakes (bad override, invalid value, unknown component, missing persona, bad input
file) print one message and exit 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from doppelkit.errors import DoppelkitError, UserError
from doppelkit.interfaces import KINDS
from doppelkit.registry import Registries

VERBS = ("ingest", "train", "chat", "serve", "validate", "plugins")
# The component kinds each job uses: only those must be installed for it to run.
VERB_NEEDS: dict[str, tuple[str, ...]] = {
    "run": ("source", "formatter", "trainer", "backend"),
    "ingest": ("source", "formatter", "backend"),
    "train": ("formatter", "trainer", "backend"),
    "chat": ("engine", "frontend", "backend"),
    "serve": ("engine", "frontend", "backend"),
    "validate": KINDS,
}
EXIT_USAGE = 2

_console = Console(stderr=True)


def fail(exc: BaseException | str, code: int = EXIT_USAGE) -> None:
    from rich.markup import escape

    # Escape: messages contain brackets such as `pip install "doppelkit[modal]"`.
    _console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    sys.exit(code)


# --- plugins -------------------------------------------------------------------------------


def plugins_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="doppelkit plugins", description="List installed plugins.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)

    from rich.table import Table

    from doppelkit.plugins import build_registries, default_plugin_manager, plugin_infos

    pm = default_plugin_manager()
    registries = build_registries(pm)
    infos = plugin_infos(pm, registries)
    if args.json:
        payload = {
            "plugins": [info.__dict__ for info in infos],
            "components": {
                r.kind: [{"name": reg.name, "plugin": reg.plugin} for reg in r] for r in registries
            },
        }
        print(json.dumps(payload, indent=2))
        return 0
    if not sys.stdout.isatty():  # piped: one plain line per plugin, nothing wrapped
        for info in infos:
            registers = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registers.items())
            other = ", ".join(h for h in info.hooks if not h.startswith("register_"))
            print("\t".join((info.name, info.distribution, info.version, registers or "-", other or "-")))
        for registry in registries:
            print(f"{registry.kind}s: {', '.join(registry.names()) or '(none)'}")
        return 0
    console = Console()
    table = Table(title="doppelkit plugins")
    for col in ("plugin", "distribution", "version", "registers", "other hooks"):
        table.add_column(col, overflow="fold")
    for info in infos:
        kinds = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in info.registers.items())
        hooks = ", ".join(h for h in info.hooks if not h.startswith("register_"))
        table.add_row(info.name, info.distribution, info.version, kinds or "-", hooks or "-")
    console.print(table)
    for registry in registries:
        names = ", ".join(registry.names()) or "(none)"
        console.print(f"[bold]{registry.kind}s[/]: {names}")
    return 0


# --- Hydra verbs ---------------------------------------------------------------------------


def _hydra_overrides(argv: Sequence[str]) -> list[str]:
    from hydra._internal.utils import get_args_parser  # Hydra's own parser: same flags, same rules

    args, _unknown = get_args_parser().parse_known_args(list(argv))
    return list(args.overrides or [])


_OVERRIDE = re.compile(r"^(?P<key>[+~]{0,2}[\w.@/:-]+)=(?P<value>.+)$", re.DOTALL)


def quote_literal_values(args: Sequence[str]) -> list[str]:
    """Quote override values Hydra's grammar cannot read unquoted, taking them literally.

    Hydra's lexer refuses many characters in an unquoted value (accents, emoji, ``☕``), so
    ``persona.user=Zoë`` or ``source.path=~/Téléchargements/export.zip`` would fail to parse.
    An override that does not parse as typed but parses as ``key='value'`` to that very string
    is passed on quoted; everything else goes to Hydra untouched (its errors stay its own).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides = set(_hydra_overrides(args))
    parser = OverridesParser.create()
    out: list[str] = []
    for arg in args:
        match = _OVERRIDE.match(arg) if arg in overrides else None
        if match and "${" not in match["value"]:
            try:
                parser.parse_override(arg)
            except HydraException:
                for quote in ("'", '"'):
                    quoted = f"{match['key']}={quote}{match['value']}{quote}"
                    try:
                        if parser.parse_override(quoted).value() == match["value"]:
                            arg = quoted
                            break
                    except HydraException:
                        continue
        out.append(arg)
    return out


class _Task:
    """Hydra's task function for one verb; records whether Hydra got as far as calling it."""

    def __init__(self, verb: str, pm: Any, registries: Registries) -> None:
        self.verb, self.pm, self.registries = verb, pm, registries
        self.started = False

    def __call__(self, cfg: Any) -> None:
        self.started = True
        from doppelkit.termination import Terminated, sigterm_raises

        try:
            with sigterm_raises():
                run_verb(self.verb, cfg, self.pm, self.registries)
        except Terminated as exc:
            fail("terminated (SIGTERM)", int(exc.code or 1))
        except UserError as exc:
            fail(exc, exc.exit_code)
        except OSError as exc:
            if exc.filename is None:
                raise  # not about a file the user named: a bug, keep the traceback
            # An unwritable home, a dataset.path in a missing or read-only place, a full disk.
            fail(f"{exc.strerror or exc}: {exc.filename}. Check home= and dataset.path=.", EXIT_USAGE)
        except KeyboardInterrupt:
            fail("interrupted", 130)


def run_verb(verb: str, cfg: Any, pm: Any, registries: Registries, console: Console | None = None) -> Any:
    from doppelkit import jobs, pipeline
    from doppelkit.config import validate

    run = validate(cfg, registries, needs=VERB_NEEDS[verb])
    if run.settings.verbose:
        from doppelkit.quiet import be_verbose

        be_verbose()
    console = console or _console
    if verb == "validate":
        chosen = ", ".join(f"{k}={s.name}" for k, s in run.selections.items())
        console.print(f"[green]configuration is valid[/]: {chosen}; home={run.settings.home}")
        return run
    context = pipeline.build_context(run, pm.hook, console, registries)
    verbs: dict[str, Callable[[], Any]] = {
        "run": lambda: jobs.run_pipeline(run, context),
        "ingest": lambda: jobs.print_dataset_report(jobs.ingest(run, context).report, console),
        "train": lambda: jobs.print_train_result(jobs.train(run, context), console),
        "chat": lambda: jobs.serve(run, context),
        "serve": lambda: jobs.serve(run, context),
    }
    return verbs[verb]()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    verb = args.pop(0) if args and args[0] in VERBS else "run"
    if verb == "plugins":
        try:
            sys.exit(plugins_command(args))
        except DoppelkitError as exc:  # a broken or conflicting plugin: say which, no traceback
            fail(exc, getattr(exc, "exit_code", 1))
    if verb == "chat" and not any(a.startswith(("frontend=", "+frontend=")) for a in args):
        args.append("frontend=chat")
    from doppelkit.quiet import quiet_libraries

    quiet_libraries()  # before any library loads; verbose=true lets warnings through again

    try:
        from doppelkit.config import config_dir, register_config_schemas
        from doppelkit.plugins import build_registries, default_plugin_manager

        pm = default_plugin_manager()
        registries = build_registries(pm)
        register_config_schemas(registries)
    except DoppelkitError as exc:
        fail(exc, getattr(exc, "exit_code", 1))
        return
    if not {"--help", "-h", "--hydra-help"} & set(args):
        from doppelkit.config import check_overrides

        args = quote_literal_values(args)
        try:
            check_overrides(_hydra_overrides(args), registries)
        except UserError as exc:
            fail(exc, exc.exit_code)

    from doppelkit.config import with_plugin_presets

    overrides = set(_hydra_overrides(args))
    args = [a for a in args if a not in overrides] + with_plugin_presets([a for a in args if a in overrides])
    import hydra

    task = _Task(verb, pm, registries)
    entry = hydra.main(config_path=str(config_dir()), config_name="doppelkit", version_base="1.3")(task)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "doppelkit", *args]
    try:
        entry()
    except SystemExit as exc:
        # Hydra exits 1 for a bad override or a composition error, before our task runs:
        # that is the user's mistake, so it gets the usage status.
        if exc.code == 1 and not task.started:
            sys.exit(EXIT_USAGE)
        raise
    finally:
        sys.argv = saved_argv


if __name__ == "__main__":
    main()
