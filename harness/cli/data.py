"""``harness data ...`` (filled in by the data issue)."""
import typer

from harness.errors import HarnessError

app = typer.Typer(no_args_is_help=True)


@app.command("toy")
def toy() -> None:
    """Generate the toy audio-visual world (not implemented yet)."""
    raise HarnessError("harness data toy is not implemented yet")
