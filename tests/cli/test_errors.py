"""User errors are one line with exit status 2 for every sub-command; bugs keep their traceback."""

import argparse
import socket

import pytest

from hamopt.cli import main
from hamopt.cli.demo import check_can_serve
from hamopt.errors import OptionError, SpecError, UserError


def _one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert err.startswith(f"hamopt {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_spec_and_option_errors_are_user_errors():
    assert issubclass(SpecError, UserError) and issubclass(SpecError, ValueError)
    assert issubclass(OptionError, UserError) and issubclass(OptionError, ValueError)


def _with_handler(monkeypatch, handler):
    """Make ``hamopt quickdemo`` run ``handler`` instead of its own."""
    import hamopt.cli as cli

    real = cli.build_parser

    def parser():
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["quickdemo"].set_defaults(func=handler)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)


def test_any_user_error_from_any_command_is_one_line(monkeypatch, capsys):
    def handler(args):
        raise SpecError("steps: must be\nat least 5")

    _with_handler(monkeypatch, handler)
    assert main(["quickdemo"]) == 2
    assert "steps: must be; at least 5" in _one_error_line(capsys, "quickdemo")


def test_a_bug_keeps_its_traceback(monkeypatch):
    def handler(args):
        raise ZeroDivisionError("a bug")

    _with_handler(monkeypatch, handler)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["quickdemo"])


def test_interrupt_is_one_line_and_status_130(monkeypatch, capsys):
    def handler(args):
        raise KeyboardInterrupt

    _with_handler(monkeypatch, handler)
    assert main(["quickdemo"]) == 130
    assert capsys.readouterr().err == "hamopt quickdemo: interrupted\n"


def test_demo_refuses_a_busy_port_in_one_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    err = _one_error_line(capsys, "demo")
    assert f"--port {port} is already in use" in err


@pytest.mark.parametrize(
    "host, message",
    [
        ("no-such-host.invalid", "--host 'no-such-host.invalid' does not resolve"),
        ("192.0.2.1", "--host '192.0.2.1' is not an address of this machine"),
    ],
)
def test_demo_refuses_an_unusable_host_in_one_line(host, message, capsys):
    assert main(["demo", "--host", host, "--port", "7860"]) == 2
    assert message in _one_error_line(capsys, "demo")


def test_demo_options_out_of_range_are_one_line(tmp_path, capsys):
    assert main(["demo", "--port", "70000"]) == 2
    assert "--port must be in 1..65535, got 70000" in _one_error_line(capsys, "demo")
    assert main(["demo", "--results", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in _one_error_line(capsys, "demo")


def test_a_free_port_passes_the_probe_and_is_released():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check_can_serve("127.0.0.1", port)
    with socket.socket() as again:  # the probe did not keep the port
        again.bind(("127.0.0.1", port))
