"""`imagegate api` plugs into an argparse CLI the way the other subcommands do (set_defaults(func=...))."""

from __future__ import annotations

import argparse

from scoring_api import cli


def test_register_adds_the_api_subcommand():
    ap = argparse.ArgumentParser(prog="imagegate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    cli.register(sub)
    args = ap.parse_args(["api", "--host", "127.0.0.1", "--port", "8099"])
    assert args.cmd == "api" and args.func is cli.run
    assert (args.host, args.port) == ("127.0.0.1", 8099)


def test_bad_configuration_exits_2_before_loading_a_model(monkeypatch, capsys):
    monkeypatch.setenv("IMAGEGATE_API_CONCURRENCY", "0")
    assert cli.main(["--port", "0"]) == 2
    assert "concurrency" in capsys.readouterr().err
