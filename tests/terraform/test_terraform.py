"""Offline checks of terraform/: formatting, structure and wiring (python-hcl2), and checkov.

The google provider cannot be downloaded here, so `terraform validate` is not available; these tests assert
what validate cannot see anyway: that the resources are wired to each other, that the functions get exactly
the settings the code reads, and that every grant is as narrow as stated.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import main

hcl2 = pytest.importorskip("hcl2")

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


@cache
def _parsed() -> dict[str, list[dict[str, Any]]]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(TF.glob("*.tf")):
        with path.open() as f:
            for key, value in hcl2.load(f, serialization_options=options).items():
                merged.setdefault(key, []).extend(value)
    return merged


def resources(kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in _parsed().get("resource", []):
        for name, body in block.get(kind, {}).items():
            found[name] = body
    return found


def resource(kind: str, name: str) -> dict[str, Any]:
    found = resources(kind)
    assert name in found, f"{kind}.{name} is missing"
    return found[name]


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in _parsed().get("locals", []):
        merged.update(block)
    return merged


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in _parsed().get("variable", []) for name, body in block.items()}


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body[name]
    assert isinstance(value, list) and len(value) == 1, f"expected one {name} block"
    return value[0]


def settings_read_by_code() -> tuple[set[str], set[str]]:
    """(all names, required names) read from the environment by dicom_pipeline/config.py."""
    tree = ast.parse((ROOT / "dicom_pipeline" / "config.py").read_text())
    names: set[str] = set()
    required: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or len(node.args) < 1:
            continue
        func = node.func
        args = node.args
        if isinstance(func, ast.Attribute) and func.attr == "get" and isinstance(args[0], ast.Constant):
            names.add(args[0].value)
        elif isinstance(func, ast.Name) and func.id in ("_required", "_number") and len(args) >= 2:
            assert isinstance(args[1], ast.Constant)
            names.add(args[1].value)
            if func.id == "_required":
                required.add(args[1].value)
    for node in ast.walk(tree):  # env["BIGQUERY_TABLE"]
        key = node.slice if isinstance(node, ast.Subscript) else None
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isupper():
            names.add(key.value)
    return names, required


def test_settings_parser_finds_the_documented_settings() -> None:
    names, required = settings_read_by_code()
    assert required == {"DICOM_STORE", "STAGING_BUCKET"}
    assert {"BIGQUERY_TABLE", "IMPORT_SUFFIXES", "OPERATION_WAIT_SECONDS", "EXPORT_WRITE_DISPOSITION"} <= names


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt_check() -> None:
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", str(TF)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"terraform fmt would change: {result.stdout}"


def test_provider_versions_are_bounded() -> None:
    (terraform,) = _parsed()["terraform"]
    providers = block(terraform, "required_providers")
    for name in ("google", "google-beta"):
        constraint = providers[name]["version"]
        assert ">=" in constraint and "<" in constraint.replace("<=", ""), constraint


def test_required_apis_are_enabled() -> None:
    services = locals_()["services"]
    for api in ("healthcare", "cloudfunctions", "run", "eventarc", "pubsub", "storage", "bigquery", "cloudbuild",
                "artifactregistry"):
        assert f"{api}.googleapis.com" in services
    assert resource("google_project_service", "apis")["for_each"] == "${local.services}"


def test_buckets_are_private_uniform_and_staging_data_expires() -> None:
    bucket = resource("google_storage_bucket", "buckets")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["labels"] == "${var.labels}"
    assert set(locals_()["core_buckets"]) == {"landing", "staging", "source"}
    assert "var.enable_gcs_export" in locals_()["buckets"] and "export" in locals_()["buckets"]
    prefixes = {rule["prefix"] for rule in locals_()["staging_lifecycle"]}
    assert {"staging/import/", "filters/export/", "outcomes/import/", "idempotency/export/"} <= prefixes
    # Batched imports stage a copy of every upload: those go first.
    ages = {rule["prefix"]: rule["age"] for rule in locals_()["staging_lifecycle"]}
    assert ages["staging/import/"] == "${var.staged_copy_retention_days}"
    assert "kms_key_name" in json.dumps(bucket["dynamic"])


def test_dicom_store_notifies_the_topic_for_bulk_imports() -> None:
    dataset = resource("google_healthcare_dataset", "dicom")
    assert dataset["location"] == "${var.region}"
    assert "encryption_spec" in json.dumps(dataset["dynamic"])
    store = resource("google_healthcare_dicom_store", "store")
    assert store["dataset"] == "${google_healthcare_dataset.dicom.id}"
    notification = block(store, "notification_config")
    assert notification["pubsub_topic"] == "${google_pubsub_topic.notifications.id}"
    assert notification["send_for_bulk_import"] is True


def test_bigquery_dataset_and_topics() -> None:
    dataset = resource("google_bigquery_dataset", "dicom")
    assert "default_encryption_configuration" in json.dumps(dataset["dynamic"])
    for name in ("notifications", "dead_letter"):
        assert resource("google_pubsub_topic", name)["kms_key_name"] == "${var.kms_key_name}"
    assert resource("google_pubsub_subscription", "dead_letter")["topic"] == "${google_pubsub_topic.dead_letter.id}"


def test_function_source_is_named_by_content_hash() -> None:
    (archive,) = [b["archive_file"]["function_source"] for b in _parsed()["data"] if "archive_file" in b]
    pattern = locals_()["function_source_files"]
    for part in ("main.py", "requirements.txt", "handlers/", "dicom_pipeline/"):
        assert part in pattern
    assert archive["type"] == "zip"
    obj = resource("google_storage_bucket_object", "function_source")
    assert "${data.archive_file.function_source.output_md5}" in obj["name"]
    for name in ("import", "export"):
        storage_source = block(block(block(resource("google_cloudfunctions2_function", name), "build_config"),
                                     "source"), "storage_source")
        assert storage_source["object"] == "${google_storage_bucket_object.function_source.name}"


def test_entry_points_are_what_main_exports() -> None:
    functions = resources("google_cloudfunctions2_function")
    assert set(functions) == {"import", "export"}
    entry_points = {block(f, "build_config")["entry_point"] for f in functions.values()}
    assert entry_points == set(main.__all__)


def test_triggers_retry_and_are_wired() -> None:
    imp = block(resource("google_cloudfunctions2_function", "import"), "event_trigger")
    assert imp["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert block(imp, "event_filters") == {"attribute": "bucket",
                                           "value": '${google_storage_bucket.buckets["landing"].name}'}
    exp = block(resource("google_cloudfunctions2_function", "export"), "event_trigger")
    assert exp["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert exp["pubsub_topic"] == "${google_pubsub_topic.notifications.id}"
    for trigger in (imp, exp):
        assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
        assert trigger["service_account_email"] == "${google_service_account.trigger.email}"
    dead_letter = resource("terraform_data", "export_dead_letter_policy")
    env = block(dead_letter, "provisioner")["local-exec"]["environment"]
    assert env["DEAD_LETTER_TOPIC"] == "${google_pubsub_topic.dead_letter.id}"
    assert env["TRIGGER"] == "${google_cloudfunctions2_function.export.event_trigger[0].trigger}"


def _environment(function: str) -> dict[str, str]:
    config = block(resource("google_cloudfunctions2_function", function), "service_config")
    match = re.fullmatch(r"\$\{local\.(\w+)\}", config["environment_variables"])
    assert match, config["environment_variables"]
    return locals_()[match.group(1)]


@pytest.mark.parametrize("function", ["import", "export"])
def test_environment_names_are_the_settings_the_code_reads(function: str) -> None:
    names, required = settings_read_by_code()
    env = _environment(function)
    assert set(env) <= names, f"not read by dicom_pipeline/config.py: {set(env) - names}"
    assert required <= set(env)
    assert env["DICOM_STORE"] == "${google_healthcare_dicom_store.store.id}"
    assert env["STAGING_BUCKET"] == '${google_storage_bucket.buckets["staging"].name}'
    # The local emulators' endpoints must never reach a deployed function.
    assert not {"HEALTHCARE_API_ENDPOINT", "STORAGE_EMULATOR_HOST"} & set(env)


def test_export_function_knows_its_table() -> None:
    assert _environment("export")["BIGQUERY_TABLE"] == "${local.bigquery_table_uri}"
    assert locals_()["bigquery_table_uri"].startswith("bq://${var.project_id}.${google_bigquery_dataset.dicom")


def test_functions_are_built_by_their_own_identity() -> None:
    for function in ("import", "export"):
        build = block(resource("google_cloudfunctions2_function", function), "build_config")
        assert build["service_account"] == "${google_service_account.build.id}"
    source = resource("google_storage_bucket_iam_member", "build_source")
    assert (source["role"], source["bucket"]) == ("roles/storage.objectViewer",
                                                  '${google_storage_bucket.buckets["source"].name}')


def test_one_service_account_per_function() -> None:
    accounts = {f: block(resource("google_cloudfunctions2_function", f), "service_config")["service_account_email"]
                for f in ("import", "export")}
    assert accounts == {"import": "${google_service_account.import_function.email}",
                        "export": "${google_service_account.export_function.email}"}


def test_no_basic_roles_anywhere() -> None:
    text = "\n".join(p.read_text() for p in TF.glob("*.tf"))
    for role in BASIC_ROLES:
        assert f'"{role}"' not in text


def _grants() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for block_ in _parsed().get("resource", []):
        for kind, named in block_.items():
            if kind.endswith("_iam_member"):
                out.extend((kind, name, body) for name, body in named.items())
    return out


def test_healthcare_service_agent_is_created_and_scoped_as_stated() -> None:
    identity = resource("google_project_service_identity", "healthcare")
    assert identity["service"] == "healthcare.googleapis.com"
    agent = "${local.healthcare_agent}"
    assert locals_()["healthcare_agent"] == "serviceAccount:${google_project_service_identity.healthcare.email}"
    grants = {(kind, name): body for kind, name, body in _grants() if body.get("member") == agent}
    read = grants.pop(("google_storage_bucket_iam_member", "healthcare_agent_read"))
    assert read["for_each"] == '${toset(["landing", "staging"])}'
    assert read["role"] == "roles/storage.objectViewer"
    export = grants.pop(("google_storage_bucket_iam_member", "healthcare_agent_export"))
    assert (export["role"], export["bucket"]) == ("roles/storage.objectAdmin",
                                                 '${google_storage_bucket.buckets["export"].name}')
    assert export["count"] == "${var.enable_gcs_export ? 1 : 0}"
    editor = grants.pop(("google_bigquery_dataset_iam_member", "healthcare_agent"))
    assert (editor["role"], editor["dataset_id"]) == ("roles/bigquery.dataEditor",
                                                      "${google_bigquery_dataset.dicom.dataset_id}")
    job_user = grants.pop(("google_project_iam_member", "healthcare_agent_job_user"))
    assert job_user["role"] == "roles/bigquery.jobUser"
    publisher = grants.pop(("google_pubsub_topic_iam_member", "healthcare_agent_notifications"))
    assert (publisher["role"], publisher["topic"]) == ("roles/pubsub.publisher",
                                                       "${google_pubsub_topic.notifications.name}")
    assert grants == {}, f"unexpected grants to the Healthcare service agent: {list(grants)}"


def test_project_level_grants_are_the_justified_few() -> None:
    project_grants = {name: body["role"] for kind, name, body in _grants() if kind == "google_project_iam_member"}
    assert project_grants == {
        "healthcare_agent_job_user": "roles/bigquery.jobUser",
        "trigger_event_receiver": "roles/eventarc.eventReceiver",
        "gcs_agent_publisher": "roles/pubsub.publisher",
        "build": "${each.value}",
        "export_function_job_user": "roles/bigquery.jobUser",  # reconcile.tf: the reconciler's queries
    }
    build = resource("google_project_iam_member", "build")
    assert build["for_each"] == '${toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])}'
    iam_tf = (TF / "iam.tf").read_text() + (TF / "reconcile.tf").read_text()
    assert iam_tf.count("Project level on purpose") == len(project_grants)


def test_function_identities_get_only_what_they_use() -> None:
    importer = resource("google_storage_bucket_iam_member", "import_function")["for_each"]
    exporter = resource("google_storage_bucket_iam_member", "export_function")["for_each"]
    assert {v["role"] for v in importer.values()} == {"roles/storage.objectViewer", "roles/storage.objectUser"}
    assert {v["bucket"] for v in importer.values()} == {"landing", "staging"}
    assert exporter == {"staging roles/storage.objectUser": {"bucket": "staging", "role": "roles/storage.objectUser"}}
    store = resource("google_healthcare_dicom_store_iam_member", "functions")
    assert store["dicom_store_id"] == "${google_healthcare_dicom_store.store.id}"
    assert store["role"] == "roles/healthcare.dicomEditor"
    invoker = resource("google_cloud_run_v2_service_iam_member", "trigger_invoker")
    assert invoker["role"] == "roles/run.invoker" and invoker["member"] == "${local.trigger}"
    receiver = resource("google_project_iam_member", "trigger_event_receiver")
    assert receiver["member"] == "${local.trigger}"


def test_variables_are_typed_described_and_sorted() -> None:
    declared = variables()
    assert list(declared) == sorted(declared)
    for name, body in declared.items():
        assert body.get("type") and body.get("description"), name
    assert "project_id" in declared and "default" not in declared["project_id"]
    example = (TF / "terraform.tfvars.example").read_text()
    assert "project_id" in example


def test_outputs_cover_what_an_operator_needs() -> None:
    outputs = {name for b in _parsed()["output"] for name in b}
    assert {"landing_bucket", "staging_bucket", "export_bucket", "dicom_store", "bigquery_table_uri",
            "import_function", "export_function"} <= outputs
    readme = (TF / "README.md").read_text()
    for name in list(variables()) + sorted(outputs):
        assert f"`{name}`" in readme, f"{name} is not documented in terraform/README.md"


@pytest.mark.integration
def test_checkov_finds_no_failed_checks() -> None:
    if not CHECKOV.exists():
        pytest.skip("checkov's virtualenv .venv-checkov is missing; `make checkov` creates it")
    result = subprocess.run([str(CHECKOV), "-d", str(TF), "--framework", "terraform", "--skip-download", "--compact",
                             "-o", "json"], capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [(c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]]
    assert failed == []
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    skips = re.findall(r"#\s*checkov:skip=(CKV_[A-Z0-9_]+)(.*)", "\n".join(p.read_text() for p in TF.glob("*.tf")))
    assert skipped == {check for check, _ in skips}
    assert all(re.fullmatch(r":\s*\S.{9,}", reason.rstrip()) for _, reason in skips), "every skip needs a reason"
