"""`python -m local_bigquery create-dataset --data-dir DIR PROJECT:DATASET`: the local `bq mk --dataset`.

Exports and streaming never create BigQuery datasets (the real API fails when the dataset is missing), so
whoever sets up a local warehouse creates its datasets first, as Terraform's google_bigquery_dataset does in
the cloud. `local-stack up` creates its own; tests call local_bigquery.warehouse.create_dataset.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from .warehouse import WarehouseBusy, create_dataset

# bq's PROJECT:DATASET, or PROJECT.DATASET as in bq:// URIs; a domain-scoped project keeps its own colon.
_NAME = re.compile(r"(?P<project>(?:[a-z0-9][a-z0-9.\-]*:)?[a-z0-9][a-z0-9\-_.]*?)[:.](?P<dataset>\w{1,1024})",
                   re.ASCII)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_bigquery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-dataset", help="create a BigQuery dataset in the local warehouse")
    create.add_argument("dataset", help="PROJECT:DATASET (as bq mk) or PROJECT.DATASET")
    create.add_argument("--data-dir", default=os.environ.get("HEALTHCARE_EMULATOR_DATA_DIR"),
                        help="the emulator's data directory (default: $HEALTHCARE_EMULATOR_DATA_DIR)")
    create.add_argument("--exists-ok", action="store_true", help="succeed when the dataset already exists")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir is required (or set HEALTHCARE_EMULATOR_DATA_DIR): the emulator's data directory")
    match = _NAME.fullmatch(args.dataset)
    if not match:
        parser.error(f"{args.dataset!r} is not PROJECT:DATASET (dataset IDs are letters, digits and _)")
    project, dataset = match["project"], match["dataset"]
    try:
        created = create_dataset(args.data_dir, project, dataset, exists_ok=args.exists_ok)
    except FileExistsError as exc:
        print(f"error: {exc}; pass --exists-ok to accept it", file=sys.stderr)
        return 1
    except WarehouseBusy as exc:
        print(f"error: {exc}; stop the process that keeps the warehouse open and retry", file=sys.stderr)
        return 1
    print(f"Dataset '{project}:{dataset}' successfully created." if created
          else f"Dataset '{project}:{dataset}' already exists.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
