"""`local-stack up|down|status`: the local stack's own command line (python -m local_stack), called in-process."""

from __future__ import annotations

import argparse

from .common import LOCAL_EXTRA_FIX, UsageError


def cmd_local_stack(args: argparse.Namespace) -> int:
    try:
        from local_stack.__main__ import main as local_stack_main
    except ModuleNotFoundError as exc:
        raise UsageError(f"the local stack needs {exc.name}: {LOCAL_EXTRA_FIX}") from exc

    # `up` prints the endpoints and the export lines, HEALTHCARE_EMULATOR_DATA_DIR for `query` included.
    status = local_stack_main([args.action, "--run-dir", str(args.run_dir)])
    if args.action == "up" and status == 0:
        print(f"\nweb console: dicom-pipeline console --run-dir {args.run_dir}   (then open http://127.0.0.1:8088/)")
    return status
