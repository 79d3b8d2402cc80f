"""Command line: ``python -m providers.emulators <kind> --port N [knobs]``.

Every knob of the kind's config class is a flag (``latency_ms`` becomes
``--latency-ms``).  ``--port 0`` binds a free port; the ready line printed to
stderr (``emulator <kind> listening on http://host:port``) tells which.
"""

from __future__ import annotations

# Patch before anything else imports socket/threading/time: the server relies
# on cooperative sleeps and sockets, and only the process entry point may
# decide to patch the whole interpreter.
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from providers.emulators import available_kinds, load_emulator_class  # noqa: E402
from providers.emulators.base import EmulatorConfig, parse_fault, serve  # noqa: E402


def _add_server_arguments(parser: argparse.ArgumentParser, kinds: Sequence[str]) -> None:
    parser.add_argument("kind", choices=list(kinds), help="which provider to emulate")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=0, help="bind port; 0 picks a free one (default 0)"
    )
    parser.add_argument("--backlog", type=int, default=4096, help="listen backlog (default 4096)")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")


def _add_config_arguments(
    parser: argparse.ArgumentParser, config_class: type[EmulatorConfig]
) -> None:
    """Turn every dataclass field of ``config_class`` into a ``--flag``."""
    defaults = config_class()
    types = config_class.field_types()
    group = parser.add_argument_group(f"knobs ({config_class.__name__})")
    for f in dataclasses.fields(config_class):
        base, _optional = types[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = str(f.metadata.get("help", ""))
        if "default" not in help_text:
            help_text = f"{help_text} (default {default})".strip()
        if base is bool:
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        elif f.name == "fault":
            group.add_argument(flag, dest=f.name, type=parse_fault, default=default, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=base, default=default, help=help_text)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build the emulator and serve until interrupted."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    kinds = available_kinds()

    # The knob flags depend on the kind, so find the kind before the full parse.
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("kind", nargs="?")
    known, _ = probe.parse_known_args(args_list)
    kind = known.kind if known.kind in kinds else None
    config_class = load_emulator_class(kind).config_class if kind else EmulatorConfig

    parser = argparse.ArgumentParser(
        prog="python -m providers.emulators",
        description="Run a wire-level fake LLM provider (see providers/emulators/base.py).",
    )
    _add_server_arguments(parser, kinds)
    _add_config_arguments(parser, config_class)
    args = parser.parse_args(args_list)

    knob_names = [f.name for f in dataclasses.fields(config_class)]
    config = config_class(**{name: getattr(args, name) for name in knob_names})
    try:
        config.validate()
    except ValueError as exc:
        parser.error(str(exc))

    emulator_class = load_emulator_class(args.kind)
    app = emulator_class(config)

    def ready(url: str) -> None:
        print(f"emulator {args.kind} listening on {url}", file=sys.stderr, flush=True)

    try:
        serve(
            app, args.host, args.port, backlog=args.backlog, access_log=args.access_log, ready=ready
        )
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
