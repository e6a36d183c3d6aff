import subprocess
import sys

from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_common import __version__


def test_version_prints_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_version_does_not_import_textual_or_the_server() -> None:
    code = (
        "import sys, cfm_cli.main as m\n"
        "sys.argv = ['cfm', '--version']\n"
        "try:\n    m.main()\nexcept SystemExit:\n    pass\n"
        "heavy = [n for n in sys.modules if n.split('.')[0] in ('textual', 'websockets')"
        " or n.startswith('cfm_server.hub')]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout


def test_one_command_subcommands_do_not_advertise_sub_commands() -> None:
    for name in ("serve", "chat", "bench"):
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert f"cfm {name} [OPTIONS]" in result.output
        assert "COMMAND [ARGS]" not in result.output
