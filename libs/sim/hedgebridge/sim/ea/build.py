"""Build the Expert Advisor (``mql5/``) as a Linux program against the MQL5 runtime for tests.

``build_ea(transport=...)`` translates the EA's sources (``transform``), compiles them with g++ against
``mql5/testing/runtime`` and returns the binary. Builds are cached under ``build/ea/`` by a hash of every
input (sources, runtime headers, this module, the compiler and its flags), so tests compile once per change.
``python -m hedgebridge.sim.ea.build [--transport dll|native]`` builds from the shell and prints the path.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import transform

REPO = Path(__file__).resolve().parents[5]
MQL5 = REPO / "mql5"
RUNTIME = MQL5 / "testing" / "runtime"
BUILD = REPO / "build" / "ea"
EXPERTS = {"dll": "HedgeSystemConnector.mq5", "native": "HedgeSystemConnector.mq5"}
FLAGS = ["-std=c++17", "-O1", "-g", "-w", "-fno-strict-aliasing"]
LIBS = ["-lssl", "-lcrypto", "-ldl"]
BUILD_TIMEOUT_S = 1800  # a loaded 2-core machine compiles the EA in minutes; a hung compiler stops here


class BuildError(RuntimeError):
    """The EA could not be built; the message holds the transform's or the compiler's first errors."""


def _expert(transport: str) -> Path:
    if transport not in EXPERTS:
        raise BuildError(f"transport must be one of {', '.join(sorted(EXPERTS))}, not {transport!r}")
    native = MQL5 / "Experts" / "HedgeSystemConnectorNative.mq5"
    if transport == "native" and native.exists():
        return native
    return MQL5 / "Experts" / EXPERTS[transport]


def _digest(expert: Path, include_root: Path, compiler: str) -> str:
    h = hashlib.sha256()
    inputs = [*sorted(expert.parent.glob("*.mq5")), Path(__file__), Path(transform.__file__)]
    inputs += sorted(include_root.rglob("*.mqh")) + sorted(RUNTIME.rglob("*"))
    for path in inputs:
        if path.is_file():
            h.update(str(path).encode())
            h.update(path.read_bytes())
    h.update(" ".join([compiler, *FLAGS, *LIBS, os.environ.get("HEDGEBRIDGE_EA_SANITIZE", "")]).encode())
    return h.hexdigest()[:16]


def build_ea(transport: str = "native", *, out_dir: Path | None = None) -> Path:
    """The compiled EA for ``transport`` (built when its inputs changed); ``BuildError`` when it cannot be."""
    return build_expert(_expert(transport), MQL5 / "Include", out_dir=out_dir)


def build_expert(expert: Path, include_root: Path, *, out_dir: Path | None = None) -> Path:
    """Any MQL5 program (``expert`` and what it includes from ``include_root``) under the test runtime."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise BuildError("cannot build the EA: g++ is not installed (apt-get install g++)")
    root = out_dir or BUILD
    target = root / f"{expert.stem}-{_digest(expert, include_root, compiler)}"
    binary = target / "ea"
    if binary.exists():
        return binary
    try:
        program = transform.transform(expert, include_root)
    except transform.TransformError as exc:
        raise BuildError(f"cannot translate the EA: {exc}") from exc
    src = target / "src"
    for rel, text in program.files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    unit = src / "main.cpp"
    unit.write_text(transform.main_unit(program, expert.name))
    flags = list(FLAGS)
    if os.environ.get("HEDGEBRIDGE_EA_SANITIZE"):
        flags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    command = ["nice", compiler, *flags, f"-I{RUNTIME}", f"-I{src}", str(unit), "-o", str(binary) + ".tmp", *LIBS]
    try:
        made = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BuildError(f"compiling the EA took more than {BUILD_TIMEOUT_S} s") from None
    if made.returncode != 0:
        errors = [line for line in made.stderr.splitlines() if "error" in line][:15]
        raise BuildError("cannot compile the EA:\n" + "\n".join(errors or made.stderr.splitlines()[:30]))
    os.replace(str(binary) + ".tmp", binary)
    return binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hedgebridge.sim.ea.build", description=__doc__)
    parser.add_argument("--transport", choices=sorted(EXPERTS), default="native")
    args = parser.parse_args(argv)
    try:
        print(build_ea(args.transport))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
