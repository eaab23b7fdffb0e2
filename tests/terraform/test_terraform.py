"""Offline checks of terraform/: formatting, structure and wiring (python-hcl2), and checkov.

The google provider cannot be downloaded here, so `terraform validate` is not available. The other offline
proofs live beside this file: the provider schema check (test_provider_schema.py), terraform's own
evaluation of settings.tf and the validations (test_evaluation.py) and the IAM simulation
(test_iam_table.py). These tests assert the wiring: resources point at each other, the functions get exactly
the settings the code reads, and each defect of issue 13 stays fixed.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from typing import Any

import pytest

import main
from tests.terraform.hcl import ROOT, TF, parsed_configuration

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


def _parsed() -> dict[str, list[dict[str, Any]]]:
    return parsed_configuration()


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
    for name in ("google", "google-beta", "time"):
        constraint = providers[name]["version"]
        assert ">=" in constraint and "<" in constraint, constraint


def test_required_apis_are_enabled() -> None:
    services = locals_()["services"]
    for api in ("healthcare", "cloudfunctions", "run", "pubsub", "storage", "bigquery", "cloudbuild",
                "artifactregistry", "iam", "logging", "monitoring"):
        assert f"{api}.googleapis.com" in services
    assert resource("google_project_service", "apis")["for_each"] == "${local.services}"


def test_buckets_are_private_uniform_and_staging_data_expires() -> None:
    bucket = resource("google_storage_bucket", "buckets")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["labels"] == "${var.labels}"
    assert block(bucket, "versioning")["enabled"] == "${each.value.versioning}"
    assert set(locals_()["core_buckets"]) == {"landing", "staging", "source"}
    assert "var.enable_gcs_export" in locals_()["buckets"] and "export" in locals_()["buckets"]
    ages = {rule["prefix"]: rule["age"] for rule in locals_()["staging_lifecycle"]}
    assert set(ages) == {"staging/import/", "filters/export/", "outcomes/import/", "idempotency/export/",
                         "dead-letter/"}
    assert ages["staging/import/"] == "${var.staged_copy_retention_days}"
    assert "kms_key_name" in json.dumps(bucket["dynamic"])


def test_healthcare_dataset_and_store() -> None:
    dataset = resource("google_healthcare_dataset", "dicom")
    assert dataset["location"] == "${var.region}"
    assert "encryption_spec" in json.dumps(dataset["dynamic"])
    store = resource("google_healthcare_dicom_store", "store")
    assert store["dataset"] == "${google_healthcare_dataset.dicom.id}"
    notification = block(store, "notification_config")
    assert notification["pubsub_topic"] == '${google_pubsub_topic.trigger["export"].id}'
    assert notification["send_for_bulk_import"] is True


def test_bigquery_dataset_and_topics() -> None:
    dataset = resource("google_bigquery_dataset", "dicom")
    assert "default_encryption_configuration" in json.dumps(dataset["dynamic"])
    for name in ("trigger", "dead_letter"):
        assert resource("google_pubsub_topic", name)["kms_key_name"] == "${var.kms_key_name}"
    assert resource("google_pubsub_subscription", "dead_letter")["topic"] == \
        "${google_pubsub_topic.dead_letter[each.key].id}"


def test_function_source_is_named_by_content_hash() -> None:
    (archive,) = [b["archive_file"]["function_source"] for b in _parsed()["data"] if "archive_file" in b]
    assert locals_()["function_source_patterns"] == ["main.py", "requirements.txt", "handlers/**/*.py",
                                                     "dicom_pipeline/**/*.py"]
    assert archive["type"] == "zip"
    obj = resource("google_storage_bucket_object", "function_source")
    assert "${data.archive_file.function_source.output_md5}" in obj["name"]
    storage_source = block(block(block(resource("google_cloudfunctions2_function", "functions"), "build_config"),
                                 "source"), "storage_source")
    assert storage_source["object"] == "${google_storage_bucket_object.function_source.name}"


def test_entry_points_are_what_main_exports() -> None:
    functions = locals_()["functions"]
    assert set(functions) == {"import", "export"} == set(locals_()["triggers"])
    assert {f["entry_point"] for f in functions.values()} == set(main.__all__)
    function = resource("google_cloudfunctions2_function", "functions")
    assert function["for_each"] == "${local.functions}"
    assert block(function, "build_config")["entry_point"] == "${each.value.entry_point}"


def _environment(function: str) -> dict[str, str]:
    """The function's environment map: the shared settings merged with the function's own (names only for those)."""
    config = block(resource("google_cloudfunctions2_function", "functions"), "service_config")
    assert config["environment_variables"] == "${each.value.environment}"
    reference = re.fullmatch(r"\$\{local\.(\w+)\}", locals_()["functions"][function]["environment"])
    assert reference, locals_()["functions"][function]
    merged = re.fullmatch(r"\$\{merge\(local\.common_environment, \{(.*)\}\)\}", locals_()[reference.group(1)])
    assert merged, locals_()[reference.group(1)]
    own = dict(re.findall(r"\b([A-Z_]+) = ([^,]+(?:\([^)]*\))?)", merged.group(1)))
    return {**locals_()["common_environment"], **own}


@pytest.mark.parametrize("function", ["import", "export"])
def test_environment_names_are_the_settings_the_code_reads(function: str) -> None:
    names, required = settings_read_by_code()
    env = _environment(function)
    assert set(env) <= names, f"not read by dicom_pipeline/config.py: {set(env) - names}"
    assert required <= set(env)
    assert env["DICOM_STORE"] == "${google_healthcare_dicom_store.store.id}"
    assert env["STAGING_BUCKET"] == '${google_storage_bucket.buckets["staging"].name}'
    assert env["HEALTHCARE_LOG_VIEW"] == "${local.log_view_name}"
    # The local emulators' endpoints must never reach a deployed function.
    assert not {"HEALTHCARE_API_ENDPOINT", "STORAGE_EMULATOR_HOST"} & set(env)


def test_export_function_knows_its_table() -> None:
    assert "BIGQUERY_TABLE" in _environment("export") and "BIGQUERY_TABLE" not in _environment("import")
    assert locals_()["bigquery_table_uri"].startswith("bq://${var.project_id}.${google_bigquery_dataset.dicom")


def test_one_service_account_per_function() -> None:
    config = block(resource("google_cloudfunctions2_function", "functions"), "service_config")
    assert config["service_account_email"] == "${each.value.account}"
    accounts = {name: f["account"] for name, f in locals_()["functions"].items()}
    assert accounts == {"import": "${google_service_account.import_function.email}",
                        "export": "${google_service_account.export_function.email}"}


def test_no_basic_roles_anywhere() -> None:
    text = "\n".join(p.read_text() for p in TF.glob("*.tf"))
    for role in BASIC_ROLES:
        assert f'"{role}"' not in text


def test_project_level_grants_are_justified_in_place() -> None:
    project_grants = {name for group in _parsed()["resource"] for name in group.get("google_project_iam_member", {})}
    assert project_grants == {"healthcare_agent_job_user", "functions_log_view", "build_sources", "build_logs"}
    iam_tf = (TF / "iam.tf").read_text()
    assert iam_tf.count("Project level on purpose") == len(project_grants)


# --- Issue 13's defects, each pinned by the test that fails without its fix. Defect 1 (fileset), 4
# (validations), 8's staging versioning and landing retention, and 9's alert definitions are evaluated by
# terraform itself in test_evaluation.py; defect 7 is proven by the IAM simulation in test_iam_table.py. ---

def test_defect2_build_identity_reads_the_functions_staging_bucket() -> None:
    grant = resource("google_project_iam_member", "build_sources")
    assert (grant["role"], grant["member"]) == ("roles/storage.objectViewer", "${local.build}")
    condition = block(grant, "condition")["expression"].replace('\\"', '"')
    assert condition == ('resource.name.startsWith("projects/_/buckets/gcf-v2-sources-'
                         '${data.google_project.this.number}-${var.region}")')


def test_defect3_fresh_project_ordering() -> None:
    for name, account in resources("google_service_account").items():
        assert "${google_project_service.apis}" in account["depends_on"], name
    for name in ("healthcare.googleapis.com", "pubsub.googleapis.com"):
        assert name in resource("google_project_service_identity", "agents")["for_each"]
    # No Eventarc: nothing needs its service agent. Events arrive by Pub/Sub push (see defect 5).
    function = resource("google_cloudfunctions2_function", "functions")
    assert "event_trigger" not in function
    assert "eventarc" not in "\n".join(p.read_text() for p in TF.glob("*.tf")).replace("Eventarc trigger", "")
    # The waits the provider's examples use between IAM grants and what needs them.
    assert {"${time_sleep.build_grants}", "${time_sleep.function_grants}"} <= set(function["depends_on"])
    assert resource("google_pubsub_subscription", "trigger")["depends_on"] == ["${time_sleep.trigger_grants}"]
    for name in ("build_grants", "function_grants", "trigger_grants"):
        assert resource("time_sleep", name)["create_duration"] == "60s"
    waited = {dep.strip("${}") for dep in resource("time_sleep", "trigger_grants")["depends_on"]}
    assert "google_cloud_run_v2_service_iam_member.trigger_invoker" in waited


def test_defect5_both_triggers_dead_letter_in_terraform_state() -> None:
    subscription = resource("google_pubsub_subscription", "trigger")
    assert subscription["for_each"] == "${local.triggers}"
    assert subscription["topic"] == "${google_pubsub_topic.trigger[each.key].id}"
    policy = block(subscription, "dead_letter_policy")
    assert policy == {"dead_letter_topic": "${google_pubsub_topic.dead_letter[each.key].id}",
                      "max_delivery_attempts": "${var.max_delivery_attempts}"}
    assert block(subscription, "retry_policy") == {"minimum_backoff": "10s", "maximum_backoff": "600s"}
    push = block(subscription, "push_config")
    uri = "${google_cloudfunctions2_function.functions[each.key].service_config[0].uri}"
    assert push["push_endpoint"] == uri
    assert block(push, "oidc_token") == {"service_account_email": "${google_service_account.trigger.email}",
                                         "audience": uri}
    assert int(subscription["ack_deadline_seconds"]) >= 540  # the functions' timeout
    assert resource("google_pubsub_topic", "dead_letter")["for_each"] == "${local.dead_letter_topics}"
    notification = resource("google_storage_notification", "landing")
    assert notification["topic"] == '${google_pubsub_topic.trigger["import"].id}'
    assert (notification["payload_format"], notification["event_types"]) == ("JSON_API_V1", ["OBJECT_FINALIZE"])
    # Nothing outside the state: no gcloud step, no provisioner.
    assert "terraform_data" not in json.dumps(_parsed().get("resource", []))
    assert "local-exec" not in "\n".join(p.read_text() for p in TF.glob("*.tf"))


def test_defect6_token_creator_for_old_pubsub_agents_is_opt_in() -> None:
    assert variables()["grant_pubsub_token_creator"]["default"] is False
    grant = resource("google_service_account_iam_member", "pubsub_agent_token_creator")
    assert grant["count"] == "${var.grant_pubsub_token_creator ? 1 : 0}"
    assert grant["service_account_id"] == "${google_service_account.trigger.name}"
    assert (grant["role"], grant["member"]) == ("roles/iam.serviceAccountTokenCreator", "${local.pubsub_agent}")


def test_defect8_data_access_audit_logs() -> None:
    audit = resource("google_project_iam_audit_config", "data_access")
    assert audit["for_each"] == '${toset(["healthcare.googleapis.com", "storage.googleapis.com"])}'
    assert {c["log_type"] for c in audit["audit_log_config"]} == {"DATA_READ", "DATA_WRITE"}
    assert "landing_retention_days" in variables()


def test_defect9_alerts_go_to_the_given_channels() -> None:
    policy = resource("google_monitoring_alert_policy", "pipeline")
    assert policy["for_each"] == "${local.alerts}"
    assert policy["notification_channels"] == "${var.notification_channels}"
    assert variables()["notification_channels"]["default"] == []
    assert locals_()["alerts"] == "${length(var.notification_channels) > 0 ? local.alert_definitions : {}}"


def test_issue16_contract_log_view() -> None:
    view = resource("google_logging_log_view", "healthcare")
    assert (view["bucket"], view["name"], view["filter"]) == ("${local.log_bucket}", "${local.log_view_id}",
                                                              "${local.log_view_filter}")
    assert locals_()["log_view_filter"] == 'resource.type = "healthcare_dicom_store"'
    grant = resource("google_project_iam_member", "functions_log_view")
    assert grant["role"] == "roles/logging.viewAccessor"
    expression = block(grant, "condition")["expression"].replace('\\"', '"')
    assert expression == 'resource.name == "${local.log_view_name}"'


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
            "import_function", "export_function", "trigger_topics", "dead_letter_subscriptions",
            "healthcare_log_view"} <= outputs
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


# --- The dependency graph terraform would build: no cycle (plan refuses one before creating anything). ---

_REFERENCE = re.compile(r"\b(data\.[a-z0-9_]+\.[a-z0-9_]+|(?:google|time|archive|terraform)_[a-z0-9_]+\.[a-z0-9_]+"
                        r"|local\.[a-z0-9_]+)")


def dependency_graph() -> dict[str, set[str]]:
    """node → the nodes it refers to (resources, data sources and locals, as terraform's graph has them)."""
    nodes: dict[str, Any] = {}
    for kind in ("resource", "data"):
        for group in _parsed().get(kind, []):
            for type_, named in group.items():
                for name, body in named.items():
                    nodes[f"{'data.' if kind == 'data' else ''}{type_}.{name}"] = body
    for name, value in locals_().items():
        nodes[f"local.{name}"] = value
    graph = {}
    for node, body in nodes.items():
        text = json.dumps(body)
        graph[node] = {ref for ref in _REFERENCE.findall(text) if ref in nodes and ref != node}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_configuration_has_no_dependency_cycle() -> None:
    graph = dependency_graph()
    assert len(graph) > 60
    assert "time_sleep.trigger_grants" in graph["google_pubsub_subscription.trigger"]
    assert find_cycle(graph) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = dependency_graph()
    # e.g. the functions waiting for the push grants, which name the functions' services
    graph["google_cloudfunctions2_function.functions"].add("time_sleep.trigger_grants")
    cycle = find_cycle(graph)
    assert cycle and "google_cloud_run_v2_service_iam_member.trigger_invoker" in cycle
