"""`dead-letters list | show | requeue | purge`: the CLI over dicom_pipeline.dead_letters."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from dicom_pipeline import dead_letters
from dicom_pipeline.dead_letters import DeadLetter, DeadLetterError, Where
from dicom_pipeline.names import DicomStoreName

from .common import FAILED, OK, UsageError, endpoint, print_json, print_table

EXAMPLES = """examples:
  dicom-pipeline dead-letters list --staging-bucket my-staging --kind import --since 24h
  dicom-pipeline dead-letters list --reason-contains "checksum mismatch" --format json
  dicom-pipeline dead-letters show import/3f2a…
  dicom-pipeline dead-letters requeue import/3f2a… export/91bc…
  dicom-pipeline dead-letters requeue --all --kind import --reason-contains "already exists"
  dicom-pipeline dead-letters purge --older-than 30d

The staging bucket is --staging-bucket or $STAGING_BUCKET; against the local stack, STORAGE_EMULATOR_HOST,
PUBSUB_EMULATOR_HOST and HEALTHCARE_API_ENDPOINT (from `local-stack up`) point the calls at the emulators.
Requeue rewrites an import's object onto itself (a new generation: a genuine finalize event) or publishes an
export's message again to the store's notification topic, then deletes the dead letter: the function's own
checks and idempotency apply, and a file still broken comes back as one new dead letter.
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--staging-bucket", default=os.environ.get("STAGING_BUCKET"),
                       help="the functions' STAGING_BUCKET (default: $STAGING_BUCKET)")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--kind", choices=dead_letters.KINDS, help="only import or only export dead letters")
    filters.add_argument("--since", help="dead-lettered at or after: a duration back (12h, 7d) or a time (RFC 3339)")
    filters.add_argument("--reason-contains", help="only those whose reason contains this text (any case)")

    dl = sub.add_parser("dead-letters", formatter_class=raw, epilog=EXAMPLES,
                        help="list, show, requeue or purge the functions' dead letters")
    dl_sub = dl.add_subparsers(dest="dead_letters_command", required=True)
    parents = [common, where]
    li = dl_sub.add_parser("list", parents=[*parents, filters], formatter_class=raw, epilog=EXAMPLES,
                           help="the dead letters, oldest first: id, time, object or message, reason")
    li.set_defaults(func=cmd_list, iam="dead-letters")
    sh = dl_sub.add_parser("show", parents=parents, formatter_class=raw, epilog=EXAMPLES,
                           help="one dead letter in full, with each file's reason from Cloud Logging")
    sh.add_argument("id", help="import/KEY or export/KEY, as `list` prints")
    sh.set_defaults(func=cmd_show, iam="dead-letters")
    rq = dl_sub.add_parser("requeue", parents=[*parents, filters], formatter_class=raw, epilog=EXAMPLES,
                           help="send dead letters through the deployed function again, then delete them")
    rq.add_argument("ids", nargs="*", metavar="ID", help="import/KEY or export/KEY")
    rq.add_argument("--all", action="store_true", help="every dead letter the filters select")
    rq.add_argument("--store", default=os.environ.get("DICOM_STORE"),
                    help="store of export requests that name none (default: $DICOM_STORE)")
    rq.add_argument("--topic", help="publish exports here (default: the store's notification topic)")
    rq.set_defaults(func=cmd_requeue, iam="dead-letters-requeue")
    pu = dl_sub.add_parser("purge", parents=parents, formatter_class=raw, epilog=EXAMPLES,
                           help="delete dead letters without requeueing them")
    pu.add_argument("ids", nargs="*", metavar="ID", help="import/KEY or export/KEY")
    pu.add_argument("--older-than", help="every dead letter written longer ago than this (30d, 12h)")
    pu.add_argument("--kind", choices=dead_letters.KINDS, help="with --older-than: only this kind")
    pu.set_defaults(func=cmd_purge, iam="dead-letters")


def _where(args: argparse.Namespace) -> Where:
    bucket = (args.staging_bucket or "").removeprefix("gs://").strip("/")
    if not bucket or "/" in bucket:
        raise UsageError("give the staging bucket: --staging-bucket NAME or STAGING_BUCKET")
    store = None
    if getattr(args, "store", None):
        try:
            store = DicomStoreName.from_string(args.store)
        except ValueError as exc:
            raise UsageError(f"--store: {exc}") from None
    pubsub = os.environ.get("PUBSUB_EMULATOR_HOST")
    return Where(bucket, os.environ.get("STORAGE_EMULATOR_HOST") or None, endpoint(args),
                 (pubsub if "://" in pubsub else f"http://{pubsub}") if pubsub else None,
                 os.environ.get("GOOGLE_CLOUD_PROJECT") or None, store, getattr(args, "topic", None))


def _selected(args: argparse.Namespace, where: Where) -> list[DeadLetter]:
    since = dead_letters.parse_since(args.since) if args.since else None
    return dead_letters.list_dead_letters(where, args.kind, since, args.reason_contains)


def cmd_list(args: argparse.Namespace) -> int:
    found = _selected(args, _where(args))
    if args.format == "json":
        print_json([_summary(letter) for letter in found])
        return OK
    if not found:
        print("no dead letters")
        return OK
    print_table(["ID", "TIME", "SUBJECT", "REASON"],
                [[letter.id, letter.time, letter.subject, _state(letter)] for letter in found])
    return OK


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {key: value for key, value in letter.as_json().items() if key != "record"}


def _state(letter: DeadLetter) -> str:
    if letter.problem:
        return f"malformed record: {letter.problem}"
    text = letter.reason if len(letter.reason) <= 160 else letter.reason[:160] + "…"
    return f"{text} [requeue started {letter.requeuing_since}]" if letter.requeuing_since else text


def cmd_show(args: argparse.Namespace) -> int:
    letter = dead_letters.get(_where(args), args.id)
    if args.format == "json":
        print_json(letter.as_json())
        return OK
    print(f"id:        {letter.id}\nkind:      {letter.kind}\ntime:      {letter.time}\nsubject:   {letter.subject}")
    if letter.operation:
        print(f"operation: {letter.operation}")
    if letter.problem:
        print(f"malformed: {letter.problem}")
    if letter.requeuing_since:
        print(f"requeue:   started {letter.requeuing_since}, not finished")
    print(f"reason:    {letter.reason}")
    for reason in letter.reasons:  # each failed file's own entry in Cloud Logging
        subject = reason.get("source") or reason.get("resourceName") or ""
        print(f"  {subject}: {reason.get('message')} (code {reason.get('code')})")
    return OK


def cmd_requeue(args: argparse.Namespace) -> int:
    where = _where(args)
    ids = _ids(args, args.all, "--all", lambda: [letter.id for letter in _selected(args, where)])
    return _each(args, ids, "requeue", lambda one: dead_letters.requeue(where, one).action)


def cmd_purge(args: argparse.Namespace) -> int:
    where = _where(args)
    if args.older_than and args.ids:
        raise UsageError("give dead-letter ids or --older-than, not both")
    if args.older_than:
        age = dead_letters.parse_age(args.older_than)
        purged = dead_letters.purge_older_than(where, age, args.kind)
        if args.format == "json":
            print_json({"purged": purged})
        else:
            print(f"purged {len(purged)} dead letters older than {args.older_than}")
        return OK
    ids = _ids(args, False, "--older-than", list)

    def purge(one: str) -> str:
        dead_letters.purge(where, one)
        return "deleted"

    return _each(args, ids, "purge", purge)


def _ids(args: argparse.Namespace, every: bool, flag: str, select: Callable[[], list[str]]) -> list[str]:
    if bool(args.ids) == bool(every):
        raise UsageError(f"give dead-letter ids or {flag}, not both and not neither")
    return list(args.ids) if args.ids else select()


def _each(args: argparse.Namespace, ids: Iterable[str], verb: str, act: Callable[[str], str]) -> int:
    """Act on each id, with progress on a terminal; a failure is reported and the rest go on (exit 1)."""
    ids = list(ids)
    results, failed = [], 0
    for one in _progress(ids, verb):
        try:
            results.append({"id": one, "ok": True, "done": act(one)})
        except DeadLetterError as exc:
            failed += 1
            results.append({"id": one, "ok": False, "error": str(exc)})
    if args.format == "json":
        print_json(results)
    else:
        for result in results:
            if result["ok"]:
                print(f"{verb}d {result['id']}: {result['done']}")
            else:
                print(f"dicom-pipeline: error: {result['error']}", file=sys.stderr)
        if not ids:
            print(f"nothing to {verb}")
    return FAILED if failed else OK


def _progress(ids: list[str], verb: str) -> Iterable[str]:
    if len(ids) < 2 or not sys.stderr.isatty():
        return ids
    from tqdm import tqdm

    return tqdm(ids, desc=verb, unit="dead letter", file=sys.stderr)
