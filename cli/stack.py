"""`local-stack up|down|status`: runs the local stack's own command line (python -m local_stack) as a child.

A child process, not an import: the CLI depends on the local stack only through its command line.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

from .common import LOCAL_EXTRA_FIX, UsageError

# What `python -m local_stack` imports first; missing, the child could only print a traceback.
_LOCAL_MODULES = ("local_stack", "healthcare_emulator", "requests")


def cmd_local_stack(args: argparse.Namespace) -> int:
    for module in _LOCAL_MODULES:
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"the local stack needs {module}: {LOCAL_EXTRA_FIX}")
    # `up` prints the endpoints and the export lines, HEALTHCARE_EMULATOR_DATA_DIR for `query` included.
    command = [sys.executable, "-m", "local_stack", args.action, "--run-dir", str(args.run_dir)]
    if sys.stdout.isatty():  # a terminal: the child draws its progress there itself
        status = subprocess.run(command, check=False).returncode
    else:
        # Otherwise pass its output on through sys.stdout/sys.stderr, so whoever redirected them gets it.
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        status = result.returncode
    if args.action == "up" and status == 0:
        print(f"\nweb console: dicom-pipeline console --run-dir {args.run_dir}   (then open http://127.0.0.1:8088/)")
    return status
