"""The local stack's command line: the whole pipeline offline.

    python -m local_stack demo [--studies 5]   start, upload samples, wait for instances and rows, query, stop
    python -m local_stack demo --keep          the same, then keep running for the web console until Ctrl-C
    python -m local_stack up [--run-dir .local-stack]   start in the background; prints endpoints and env vars
    python -m local_stack status                        what is running, and whether it answers
    python -m local_stack down                          stop everything `up` started
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from healthcare_emulator.lifecycle import process_alive, stop_on_sigterm

from .processes import tail
from .stack import UPLOAD_BUCKET, LocalStack, http_answers

DEFAULT_RUN_DIR = Path(".local-stack")
CORPUS_SAMPLE = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "rtplan.dcm",
                 "no_meta.dcm", "MR_truncated.dcm", "meta_missing_tsyntax.dcm")
BROKEN = {"no_meta.dcm", "MR_truncated.dcm", "meta_missing_tsyntax.dcm"}

# The seed documents' two queries ("Ricerca tra i metadati", "Esecuzione di query per gli studi più recenti"),
# verbatim apart from the table name and the patient id, which name public datasets in the seeds.
SEED_PATIENT_QUERY = """#standardSQL
SELECT CONCAT('/dicomWeb/studies/', StudyInstanceUID, '/series/', SeriesInstanceUID, '/instances/', SOPInstanceUID) as DICOMwebPath
FROM `{table}`
WHERE PatientID = '{patient}';
"""  # noqa: E501 - verbatim
SEED_LATEST_STUDIES_QUERY = """#standardSQL
SELECT
MIN(CONCAT(StudyDate, ' ', StudyTime)) as StudyDateTime, MIN(PatientID) as PatientID, StudyInstanceUID, COUNT(*) as InstanceCount
FROM
`{table}` AS dicom
GROUP BY StudyInstanceUID
ORDER BY StudyDateTime DESC
LIMIT 10;
"""  # noqa: E501 - verbatim


# --- demo ------------------------------------------------------------------------------------------------------

def demo(args: argparse.Namespace) -> int:
    from dicom_samples import synthetic_studies, vendor_corpus
    from local_bigquery.query import run_query

    run_dir: Path = args.run_dir.resolve()
    if args.keep and (state := _read_state(run_dir)) and process_alive(state["pid"]):
        print(f"a local stack is already running in {run_dir} (pid {state['pid']}): `python -m local_stack down"
              f" --run-dir {args.run_dir}` first, or pass another --run-dir", file=sys.stderr)
        return 2
    started = time.monotonic()
    print("starting the local stack …", flush=True)
    with LocalStack() as stack:
        print(f"  ready in {time.monotonic() - started:.1f} s")
        _print_endpoints(stack.endpoints())
        bucket = stack.storage_client().bucket(UPLOAD_BUCKET)
        synthetic = list(synthetic_studies(args.studies, series_per_study=2, instances_per_series=5,
                                           sizes=(64, 128, 256)))
        corpus = [p for p in vendor_corpus() if p.name in CORPUS_SAMPLE]
        for index, instance in enumerate(synthetic):
            bucket.blob(f"incoming/synthetic/{index:04d}.dcm").upload_from_string(instance.data,
                                                                                 content_type="application/dicom")
        for path in corpus:
            bucket.blob(f"incoming/vendor/{path.name}").upload_from_filename(str(path),
                                                                            content_type="application/dicom")
        broken = len([p for p in corpus if p.name in BROKEN])
        valid = len(synthetic) + len(corpus) - broken
        print(f"\nuploaded {len(synthetic)} synthetic instances ({args.studies} studies) and {len(corpus)} files of"
              f" pydicom's corpus ({broken} of them broken) to gs://{UPLOAD_BUCKET}/incoming/")

        ok = _wait_for_pipeline(stack, valid, broken, args.timeout)

        print("\ndead letters (gs://dicom-staging/dead-letter/import/):")
        for letter in sorted(stack.dead_letters(), key=lambda d: str(d.get("object"))):
            # The import function read the reason from Cloud Logging (the emulator's entries:list), as in Google Cloud.
            where = "  [from Cloud Logging]" if letter.get("reasons") else ""
            print(f"  {_object_name(letter.get('object'))}{where}\n    {letter.get('reason')}")

        table = f"{stack.names.project}.dicom_metadata.instances"
        patient = "SYNTH-0000"  # the first synthetic study's patient
        for title, sql in (("DICOMweb paths of one patient", SEED_PATIENT_QUERY.format(table=table, patient=patient)),
                           ("the most recent studies", SEED_LATEST_STUDIES_QUERY.format(table=table))):
            columns, rows = run_query(stack.healthcare.data_dir, sql)
            print(f"\nseed query: {title} ({len(rows)} rows)")
            _print_table(columns, rows[:10])
            if len(rows) > 10:
                print(f"  … {len(rows) - 10} more")
        if args.keep:
            _keep_running(stack, run_dir, args.run_dir)
        print("\nstopping …")
    print("stopped every process the stack started")
    return 0 if ok else 1


def _keep_running(stack: LocalStack, run_dir: Path, shown_run_dir: Path) -> None:
    """Leave the demo's stack up for a look (the web console, the CLI) until Ctrl-C or `down`."""
    def announce(state: dict[str, Any]) -> None:
        print(f"\nthe stack keeps running (run dir {run_dir}); Ctrl-C or `python -m local_stack down --run-dir"
              f" {shown_run_dir}` stops it")
        print(f"web console: dicom-pipeline console --run-dir {shown_run_dir}   (then open http://127.0.0.1:8088/)",
              flush=True)

    _run_until_stopped(stack, run_dir, announce)


def _wait_for_pipeline(stack: LocalStack, valid: int, broken: int, timeout: float) -> bool:
    """Progress until every valid instance is stored with exactly one row and every broken file dead-lettered."""
    interactive = sys.stdout.isatty()
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        instances, rows, letters = stack.instance_count(), stack.row_counts(), len(stack.dead_letters())
        line = (f"  {instances}/{valid} instances in the store, {len(rows)}/{valid} with a metadata row,"
                f" {letters}/{broken} dead letters")
        if line != last:
            print(("\r" + line) if interactive else line, end="" if interactive else "\n", flush=True)
            last = line
        done = instances == valid and len(rows) == valid and letters == broken
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # polling interval of the progress display, not a readiness wait
    if interactive:
        print()
    duplicates = {uid: n for uid, n in rows.items() if n != 1}
    if duplicates:
        print(f"  {len(duplicates)} instances have more than one row: {duplicates}")
    if not done:
        print(f"  not complete after {timeout:.0f} s")
    return done and not duplicates


def _object_name(obj: Any) -> str:
    if isinstance(obj, dict):
        return f"gs://{obj.get('bucket')}/{obj.get('name')}"
    return str(obj)


def _print_table(columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    widths = [max([len(c)] + [len(str(r[i])) for r in rows]) for i, c in enumerate(columns)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


def _print_endpoints(endpoints: dict[str, str]) -> None:
    for name, url in endpoints.items():
        print(f"  {name:20} {url}")


# --- up / down / status ----------------------------------------------------------------------------------------

def _state_file(run_dir: Path) -> Path:
    return run_dir / "state.json"


def up(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.resolve()
    state = _read_state(run_dir)
    if state and process_alive(state["pid"]):
        print(f"already running (pid {state['pid']}); `python -m local_stack down` stops it")
        _print_state(state)
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    _state_file(run_dir).unlink(missing_ok=True)
    log = run_dir / "stack.log"
    with open(log, "wb") as out:  # its own session: the terminal's Ctrl-C does not reach the background stack
        process = subprocess.Popen([sys.executable, "-m", "local_stack", "_serve", "--run-dir", str(run_dir)],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while (state := _read_state(run_dir)) is None:  # written atomically: readable once it exists
        if process.poll() is not None or time.monotonic() > deadline:
            print(f"the local stack did not start:\n{tail(log, 40)}", file=sys.stderr)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            return 1
        time.sleep(0.05)
    print(f"local stack running in the background (pid {process.pid}, run dir {run_dir})")
    _print_state(state)
    return 0


def _serve(args: argparse.Namespace) -> int:
    """The background process behind `up`: runs the stack until SIGTERM (from `down`), then stops it cleanly."""
    run_dir: Path = args.run_dir
    stop_on_sigterm()
    data_dir = run_dir / "data"
    if data_dir.exists():
        import shutil

        shutil.rmtree(data_dir)  # a fresh stack each time: resources are created on start
    try:
        with LocalStack(data_dir=data_dir) as stack:
            _run_until_stopped(stack, run_dir, lambda state: print(json.dumps(state, indent=2), flush=True))
    except KeyboardInterrupt:  # while the stack was starting
        pass
    print("stopped", flush=True)
    return 0


def _run_until_stopped(stack: LocalStack, run_dir: Path, announce: Callable[[dict[str, Any]], None]) -> None:
    """Publish the stack's state (for `status`, `down` and the console), announce it, and wait for Ctrl-C or
    SIGTERM from `down`; the state file goes when the wait ends."""
    stop_on_sigterm()
    try:
        announce(_write_state(stack, run_dir))
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        _state_file(run_dir).unlink(missing_ok=True)


def _write_state(stack: LocalStack, run_dir: Path) -> dict[str, Any]:
    """What `status`, `down` and the console read about a running stack (RUN_DIR/state.json)."""
    state = {"pid": os.getpid(), "pids": stack.pids(), "endpoints": stack.endpoints(), "env": stack.env(),
             "function_env": stack.function_env(), "store": stack.names.store_name,
             "table": stack.names.table, "upload_bucket": UPLOAD_BUCKET,
             "subscriptions": stack.pubsub_resources()}
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = _state_file(run_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(_state_file(run_dir))  # atomic: `up` never reads half a file
    return state


def down(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.resolve()
    state = _read_state(run_dir)
    if not state:
        print("not running")
        return 0
    pids = [state["pid"], *state["pids"].values()]
    if process_alive(state["pid"]):
        os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if process_alive(pid)]
    for pid in left:  # the stack did not stop in time: end what it started, by process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _state_file(run_dir).unlink(missing_ok=True)
    print("stopped" + (f" (killed {left})" if left else ""))
    return 0


def status(args: argparse.Namespace) -> int:
    state = _read_state(args.run_dir.resolve())
    if not state or not process_alive(state["pid"]):
        print("not running")
        return 1
    lines, healthy = [], True
    for name, url in state["endpoints"].items():
        if not url.startswith("http"):
            continue
        answers = http_answers(url + "/")()
        healthy &= answers
        lines.append(f"  {name:20} {url:28} {'answers' if answers else 'NOT ANSWERING'}")
    missing = _missing_pubsub_resources(state)
    restarts = _supervisor_restarts(args.run_dir.resolve())
    print(f"{'running' if healthy and not missing else 'degraded'} (pid {state['pid']})")
    print("\n".join(lines))
    for name in missing:
        print(f"  missing: {name} (uploads or notifications published meanwhile are lost)")
    if restarts:
        print(f"  the supervisor restarted: {', '.join(f'{n} ×{c}' for n, c in sorted(restarts.items()))}")
    return 0 if healthy and not missing else 1


def _missing_pubsub_resources(state: dict[str, Any]) -> list[str]:
    """The topics and subscriptions the stack needs that the Pub/Sub emulator does not have (e.g. after it
    restarted behind the supervisor's back, or someone deleted one)."""
    import requests

    host = state["endpoints"].get("pubsub-emulator", "")
    wanted = state.get("subscriptions", {})
    missing = []
    for name in sorted(set(wanted) | set(wanted.values())):
        try:
            found = requests.get(f"{host}/v1/{name}", timeout=5).status_code == 200
        except requests.RequestException:
            found = False
        if not found:
            missing.append(name)
    return missing


def _supervisor_restarts(run_dir: Path) -> dict[str, int]:
    """Components the supervisor restarted, from the background stack's log."""
    counts: dict[str, int] = {}
    try:
        text = (run_dir / "stack.log").read_text(errors="replace")
    except OSError:
        return counts
    for line in text.splitlines():
        if line.startswith("local-stack supervisor: ") and line.endswith(")") and " restarted (pid " in line:
            name = line.removeprefix("local-stack supervisor: ").split(" restarted", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


def _print_state(state: dict[str, Any]) -> None:
    print("\nendpoints:")
    _print_endpoints(state["endpoints"])
    table = state["table"].removeprefix("bq://")
    example = f'dicom-pipeline query "SELECT COUNT(*) FROM \\`{table}\\`"'  # noqa: S608 - a printed hint
    print(f"\nDICOM store {state['store']}\nBigQuery table {state['table']} (with the variables below: {example})")
    print(f"upload to gs://{state['upload_bucket']}/ to run the pipeline\n\nenvironment (gcloud, google-cloud-storage,"
          " google-cloud-pubsub, dicomweb-client via DICOMWEB_URL, dicom-pipeline):")
    for key, value in state["env"].items():
        print(f"  export {key}={value}")
    healthcare = state["endpoints"]["healthcare-emulator"]
    print("\nthe seed documents' commands run unchanged with those variables, but for these:\n"
          "  gcloud healthcare …, gcloud storage …  CLOUDSDK_API_ENDPOINT_OVERRIDES_* and"
          " CLOUDSDK_AUTH_DISABLE_CREDENTIALS\n"
          "  gsutil cp …                           BOTO_CONFIG (fake-gcs-server over https) and"
          " CLOUDSDK_PASS_CREDENTIALS_TO_GSUTIL=false\n"
          f"  curl …                                {healthcare}/v1/… in place of https://healthcare.googleapis.com/v1/…\n"
          "  bq mk --dataset P:D                   python -m local_bigquery create-dataset P:D (exports never create"
          " datasets)")


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(_state_file(run_dir).read_text()))
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="start, upload samples, wait, query, stop")
    run.add_argument("--studies", type=int, default=5, help="synthetic studies (10 instances each; default 5)")
    run.add_argument("--timeout", type=float, default=120, help="seconds to wait for the pipeline (default 120)")
    run.add_argument("--keep", action="store_true", help="keep the stack running afterwards (for the web console)"
                     " until Ctrl-C or `down`")
    run.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                     help="with --keep: where its state goes, for `status`, `down` and the console"
                     " (default .local-stack)")
    run.set_defaults(func=demo)
    for name, func in (("up", up), ("down", down), ("status", status), ("_serve", _serve)):
        sub = commands.add_parser(name, help=argparse.SUPPRESS if name.startswith("_") else f"{name} the stack")
        sub.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="state and data (default .local-stack)")
        sub.set_defaults(func=func)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # the with-blocks have already stopped every process
        print("\ninterrupted; stopped every process the stack started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
