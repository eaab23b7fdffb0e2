"""`local-stack up|down|status`: the local stack's own command line (python -m local_stack), called in-process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import LOCAL_EXTRA_FIX, OK, UsageError


def cmd_local_stack(args: argparse.Namespace) -> int:
    try:
        from local_stack.__main__ import main as local_stack_main
    except ModuleNotFoundError as exc:
        raise UsageError(f"the local stack needs {exc.name}: {LOCAL_EXTRA_FIX}") from exc

    code = local_stack_main([args.action, "--run-dir", str(args.run_dir)])
    if args.action == "up" and code == OK:
        _print_cli_hints(args.run_dir)
    return code


def _print_cli_hints(run_dir: Path) -> None:
    """What to export so that this CLI's commands go to the stack that just started (read from its state file)."""
    try:
        state = json.loads((run_dir / "state.json").read_text())
        warehouse = state["endpoints"]["warehouse-dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    print(f"\nfor dicom-pipeline (query, filter build):\n  export HEALTHCARE_EMULATOR_DATA_DIR={warehouse}")
