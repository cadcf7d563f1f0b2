"""The ``cosim`` command. Each subcommand lives in ``cosim/commands/<name>.py`` as a click command
named ``command`` and is imported only when used, so ``cosim --help`` stays fast and a step never
imports the steps after it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from .errors import CosimError

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "spice": ("cosim.commands.spice", "Simulate one crossbar array in ngspice; print column currents."),
    "solve": ("cosim.commands.solve", "Solve one crossbar array exactly (no ngspice); print column currents."),
    "calibrate": ("cosim.commands.calibrate", "Run a SPICE sweep and fit lookup tables for the surrogate."),
    "validate": ("cosim.commands.validate", "Compare the surrogate with fresh SPICE points."),
    "train": ("cosim.commands.train", "Train a binary network on CIFAR-10."),
    "eval": ("cosim.commands.eval", "Evaluate a binary network's software accuracy."),
    "infer": ("cosim.commands.infer", "Run a whole network on simulated crossbars (ideal/surrogate/spice/exact)."),
    "report": ("cosim.commands.report", "Run the BinSparX study grid and write docs/REPORT.md."),
    "cache": ("cosim.commands.cache", "Show or trim the SPICE result cache."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, (mod, _) in COMMANDS.items() if importlib.util.find_spec(mod) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _ = COMMANDS[name]
        if importlib.util.find_spec(module) is None:
            return None
        return importlib.import_module(module).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][1]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="cosim")
def cli() -> None:
    """cosim: SPICE-backed co-simulation of compute-in-memory BNN accelerators."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: cosim errors become one line on stderr and exit status 1, never a traceback."""
    try:
        cli.main(args=argv, prog_name="cosim", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except CosimError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        # the reader of our output went away (cosim ... | head): nothing to say, and no more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as e:
        # a file-system fault nothing more specific caught (read-only, full, a file in the way): its path
        # and cause in one line (results are written atomically: nothing is left half-written)
        from .fileio import describe_os_error
        click.echo(f"error: {describe_os_error(e)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("error: interrupted (finished work was kept)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
