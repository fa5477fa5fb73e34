"""What the CLI says before it works: help that matches what each command takes, and listening commands that
check their port first (one error line, exit 2, nothing announced)."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from ventriloquist.cli import build_parser, main
from ventriloquist.config import OPTIONS


def _help(command: str) -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[command].format_help()


def test_help_says_what_each_command_takes():
    live = _help("live")
    assert "--emotion-timeline" not in live and "--fps" not in live and "default 256" in live
    batch = _help("batch").replace("\n", "").replace(" ", "")
    assert all(name in batch for name in OPTIONS) and "emotion_timeline" in batch
    assert "default 8000" in _help("serve") and "default 7860" in _help("app")
    assert "--fps" in _help("generate") and "--emotion-timeline" in _help("generate")


@pytest.mark.parametrize("command", ["serve", "app", "live"])
def test_a_port_in_use_is_one_error_before_anything_is_announced(command, face_path, speech_wav):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        extra = ["--face", str(face_path), "--audio", str(speech_wav)] if command == "live" else []
        proc = subprocess.run([sys.executable, "-m", "ventriloquist.cli", command, "--port", str(port), *extra],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.strip() == (f"error: port {port} on 127.0.0.1 is already in use "
                                                         "(another server?); pass another --port")
    bad = subprocess.run([sys.executable, "-m", "ventriloquist.cli", command, "--port", "99999", *extra],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == "" and "99999 is not a port" in bad.stderr


def test_a_microphone_without_portaudio_is_an_option_error(face_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)               # import fails as without PortAudio
    assert main(["live", "--face", str(face_path), "--mic", "--no-page"]) == 2
    err = capsys.readouterr().err
    assert "--mic cannot be used here" in err and "PortAudio" in err
