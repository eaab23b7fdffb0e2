"""The IAM simulation over terraform/iam_table.toml (see the table's header for what it holds).

    python -m tests.terraform.iam_table    # prints the coverage figures
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.terraform.hcl import ROOT, TF, parse_files, parsed_configuration

TABLE = TF / "iam_table.toml"

# Which resource paths a grant resource type can sit on (a project-level grant needs a condition to be
# narrower than the project).
SCOPE_OF_TYPE = {
    "google_storage_bucket_iam_member": r"project/bucket:[^/]+",
    "google_storage_managed_folder_iam_member": r"project/bucket:[^/]+/folder:.+/",
    "google_healthcare_dicom_store_iam_member": r"project/healthcare_dataset/dicom_store",
    "google_healthcare_dataset_iam_member": r"project/healthcare_dataset",
    "google_bigquery_dataset_iam_member": r"project/bigquery_dataset",
    "google_pubsub_topic_iam_member": r"project/(dead_letter_)?topic:\w+",
    "google_pubsub_subscription_iam_member": r"project/subscription:\w+",
    "google_cloud_run_v2_service_iam_member": r"project/cloud_run_service:\w+",
    "google_service_account_iam_member": r"project/service_account:\w+",
    "google_artifact_registry_repository_iam_member": r"project/artifact_repository",
    "google_kms_crypto_key_iam_member": r"kms_key",
    "google_project_iam_member": r"project.*",
}


@cache
def table() -> dict[str, Any]:
    with TABLE.open("rb") as f:
        return tomllib.load(f)


@cache
def custom_role_permissions() -> dict[str, list[str]]:
    """custom:KEY → permissions, as terraform/settings.tf's local.custom_roles defines them."""
    (roles,) = [b["custom_roles"] for b in parse_files([TF / "settings.tf"])["locals"] if "custom_roles" in b]
    return {f"custom:{key}": role["permissions"] for key, role in roles.items()}


def permissions_of(role: str) -> set[str]:
    if role.startswith("custom:"):
        return set(custom_role_permissions()[role])
    return set(table()["roles"][role]["permissions"])


def covers(grant_on: str, call_on: str) -> bool:
    return call_on == grant_on or call_on.startswith(grant_on + "/")


def applies(grant: dict[str, Any], call: dict[str, Any]) -> bool:
    """A grant that exists only under a variable covers only calls made under that same variable."""
    return grant.get("when") is None or grant.get("when") == call.get("when")


@dataclass
class Simulation:
    uncovered: list[dict[str, Any]]
    unused: list[dict[str, Any]]
    unused_custom_permissions: list[tuple[str, str]]
    calls: int
    grants: int


def simulate(calls: list[dict[str, Any]], grants: list[dict[str, Any]]) -> Simulation:
    used: set[int] = set()
    used_custom: set[tuple[str, str]] = set()
    uncovered = []
    for call in calls:
        covering = [i for i, g in enumerate(grants) if g["who"] == call["who"] and applies(g, call)
                    and call["permission"] in permissions_of(g["role"]) and covers(g["on"], call["on"])]
        if not covering:
            uncovered.append(call)
        used.update(covering)
        used_custom.update((grants[i]["role"], call["permission"]) for i in covering
                           if grants[i]["role"].startswith("custom:"))
    unused = [g for i, g in enumerate(grants) if i not in used]
    granted_custom = {(g["role"], p) for g in grants if g["role"].startswith("custom:")
                      for p in permissions_of(g["role"])}
    return Simulation(uncovered, unused, sorted(granted_custom - used_custom), len(calls), len(grants))


# --- Table ↔ Terraform. ---

def iam_resources() -> dict[str, dict[str, Any]]:
    """type.name → body of every *_iam_member resource in terraform/*.tf."""
    found = {}
    for group in parsed_configuration().get("resource", []):
        for type_, named in group.items():
            if type_.endswith("_iam_member"):
                for name, body in named.items():
                    found[f"{type_}.{name}"] = body
    return found


def _role_matches(body: dict[str, Any], row: dict[str, Any]) -> bool:
    role = str(body["role"])
    if role.startswith("roles/"):
        return row["role"] == role
    if role == "${each.value.role}":
        return row["role"] in {v["role"] for v in body["for_each"].values()}
    custom = re.fullmatch(r"\$\{google_project_iam_custom_role\.functions\[(each\.key|\"(\w+)\")\]\.name\}", role)
    if custom:
        key = custom.group(2) or row["who"].removesuffix("_function")
        return row["role"] == f"custom:{key}"
    return False


def _member_matches(body: dict[str, Any], row: dict[str, Any]) -> bool:
    member = body["member"]
    if member == "${each.value}" and body.get("for_each") == "${local.function_members}":
        return row["who"] in ("import_function", "export_function")
    return member == table()["principals"][row["who"]]


def _target_matches(type_: str, body: dict[str, Any], row: dict[str, Any]) -> bool:
    if not re.fullmatch(SCOPE_OF_TYPE[type_], row["on"]):
        return False
    if type_ == "google_project_iam_member":
        conditioned = "condition" in body
        return conditioned == ("condition" in row) and (conditioned or row["on"] == "project")
    name = row["on"].rsplit(":", 1)[-1] if ":" in row["on"] else None
    if type_ == "google_storage_bucket_iam_member" and name:
        return f'"{name}"' in json.dumps(body) or f"\\\"{name}\\\"" in json.dumps(body)
    return True


def terraform_mismatches(resources: dict[str, dict[str, Any]] | None = None,
                         grants: list[dict[str, Any]] | None = None) -> list[str]:
    resources = iam_resources() if resources is None else resources
    problems = []
    rows_by_address: dict[str, list[dict[str, Any]]] = {}
    for row in table()["grants"] if grants is None else grants:
        rows_by_address.setdefault(row["terraform"], []).append(row)
    for address in sorted(set(resources) - set(rows_by_address)):
        problems.append(f"{address}: a grant in terraform without a row in iam_table.toml")
    for address, rows in rows_by_address.items():
        body = resources.get(address)
        if body is None:
            problems.append(f"{address}: named in iam_table.toml but not in terraform")
            continue
        type_ = address.split(".")[0]
        for row in rows:
            where = f"{address} ({row['who']} {row['role']} on {row['on']})"
            if not _role_matches(body, row):
                problems.append(f"{where}: role differs from terraform's {body['role']}")
            if not _member_matches(body, row):
                problems.append(f"{where}: member differs from terraform's {body['member']}")
            if not _target_matches(type_, body, row):
                problems.append(f"{where}: a {type_} cannot be that grant")
    return problems


# --- Table ↔ code. ---

API_CALLS = ("_call", "_upload", "_execute")  # the API modules' own request helpers
API_MODULES = ("dicom_pipeline/cloud_storage.py", "dicom_pipeline/healthcare.py", "dicom_pipeline/operation_logs.py")


def code_functions_calling_apis() -> set[str]:
    """FILE:FUNCTION of each function in the API modules that sends a request itself: it calls one of the
    request helpers, or a google-api-python-client request's execute()."""
    found = set()
    for module in API_MODULES:
        tree = ast.parse((ROOT / module).read_text())
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or node.name in API_CALLS:
                continue
            calls = [n.func for n in ast.walk(node) if isinstance(n, ast.Call)]
            if any(isinstance(f, ast.Name) and f.id in API_CALLS for f in calls) or \
                    any(isinstance(f, ast.Attribute) and f.attr == "execute" for f in calls):
                found.add(f"{module}:{node.name}")
    return found


def code_reference_exists(reference: str) -> bool:
    path, function = reference.split(":")
    source = ROOT / path
    return source.exists() and any(isinstance(n, ast.FunctionDef) and n.name == function
                                   for n in ast.walk(ast.parse(source.read_text())))


def main() -> int:
    result = simulate(table()["calls"], table()["grants"])
    mismatches = terraform_mismatches()
    print(f"IAM table: {result.calls} calls, {result.calls - len(result.uncovered)} covered; "
          f"{result.grants} grant rows, {result.grants - len(result.unused)} used, {len(result.unused)} unused; "
          f"custom-role permissions unused: {len(result.unused_custom_permissions)}; "
          f"terraform grant resources: {len(iam_resources())}, mismatches: {len(mismatches)}")
    for item in [*result.uncovered, *result.unused, *mismatches]:
        print(f"  {item}")
    return 1 if result.uncovered or result.unused or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
