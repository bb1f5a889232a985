"""``python -m latchkey_sdk build APP.py [-o APP.wasm]``: one command from a Python step to a
Latchkey component.

Runs componentize-py (pinned in ``pyproject.toml``, installed with this package) against this
package's copy of the WIT world ``latchkey:workflow@0.2.0``, with the step's folder and this SDK
on the module path.
WASI is not stubbed (``-s`` is not given): the interpreter keeps a working clock, random
source and stdout, and imports ``wasi:filesystem`` and ``wasi:sockets``, which Latchkey links
with nothing granted (no directories, every socket operation denied).
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def componentize_py() -> str:
    # Beside this interpreter first (a venv's bin/), then on PATH.
    beside = Path(sys.executable).parent / "componentize-py"
    found = str(beside) if beside.exists() else shutil.which("componentize-py")
    if not found:
        sys.exit(
            "latchkey_sdk: componentize-py is not installed: install this SDK with pip, which "
            "brings it (`pip install path/to/guest-sdk/python` or the SDK's wheel)"
        )
    return found


def build(app: Path, out: Path) -> None:
    if not app.is_file():
        sys.exit(f"latchkey_sdk: {app}: no such file")
    if app.suffix != ".py":
        sys.exit(f"latchkey_sdk: {app}: a step is a .py module")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        componentize_py(),
        "-d", str(HERE / "wit"),
        "-w", "workflow",
        "componentize",
        "-p", str(app.parent),
        "-p", str(HERE.parent),
        app.stem,
        "-o", str(out),
    ]
    done = subprocess.run(command, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.exit(f"latchkey_sdk: componentize-py failed on {app} (exit {done.returncode})")
    size = os.path.getsize(out) / 1e6
    print(f"latchkey_sdk: {out} ({size:.1f} MB)", file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m latchkey_sdk",
        description="Build a Latchkey workflow step from a Python module whose step "
        "function is decorated with @latchkey_sdk.step.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="build APP.py into a component")
    b.add_argument("app", type=Path, help="the step's module, e.g. app.py")
    b.add_argument("-o", "--out", type=Path, help="the component (default: APP.wasm beside it)")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.app.resolve(), (args.out or args.app.with_suffix(".wasm")).resolve())


if __name__ == "__main__":
    main()
