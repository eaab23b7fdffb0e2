"""The IAM simulation: every call the code and the service agents make is covered by a Terraform grant on the
right resource, no grant is unused, and the table is the Terraform configuration's and the code's."""

from __future__ import annotations

import copy

import pytest

from cli.permissions import role_hints
from tests.terraform.iam_table import (
    code_functions_calling_apis,
    code_reference_exists,
    custom_role_permissions,
    iam_resources,
    permissions_of,
    simulate,
    table,
    terraform_mismatches,
)


def test_every_call_is_covered_and_no_grant_is_unused() -> None:
    result = simulate(table()["calls"], table()["grants"])
    assert result.uncovered == []
    assert result.unused == []
    assert result.unused_custom_permissions == []  # custom roles hold exactly what is called
    assert result.calls >= 40 and result.grants >= 29


def test_every_terraform_grant_is_a_row_of_the_table() -> None:
    assert terraform_mismatches() == []
    assert len(iam_resources()) >= 21


def test_every_api_call_in_the_code_is_in_the_table() -> None:
    referenced = {c["code"] for c in table()["calls"] if "code" in c}
    assert code_functions_calling_apis() <= referenced
    assert all(code_reference_exists(ref) for ref in referenced)
    assert all(("code" in c) != ("operation" in c) for c in table()["calls"])


def test_roles_named_anywhere_are_defined_with_their_source() -> None:
    roles = table()["roles"]
    named = {g["role"] for g in table()["grants"]} | {n["role"] for row in table()["cli"] for n in row["needs"]}
    for role in named:
        if role.startswith("custom:"):
            assert role in custom_role_permissions()
        else:
            assert roles[role]["source"].startswith("https://cloud.google.com/iam/docs/roles-permissions/")
    assert set(table()["principals"]) >= {g["who"] for g in table()["grants"]} | {c["who"] for c in table()["calls"]}


def test_cli_hints_come_from_the_table_and_each_role_holds_its_permission() -> None:
    for row in table()["cli"]:
        for need in row["needs"]:
            assert need["permission"] in permissions_of(need["role"]), need
            assert f"{need['role']} on {need['where']}" in role_hints()[row["command"]]


# --- The simulation and the cross-checks can fail. ---

def test_a_missing_grant_leaves_its_calls_uncovered() -> None:
    grants = [g for g in table()["grants"] if g["terraform"] != "google_healthcare_dataset_iam_member.functions"]
    uncovered = simulate(table()["calls"], grants).uncovered
    assert {c["permission"] for c in uncovered} == {"healthcare.operations.get"}


def test_a_grant_on_the_wrong_resource_does_not_cover() -> None:
    grants = copy.deepcopy(table()["grants"])
    for g in grants:
        if g["terraform"] == "google_storage_managed_folder_iam_member.healthcare_agent_staging":
            g["on"] = "project/bucket:staging/folder:outcomes/import/"
    result = simulate(table()["calls"], grants)
    assert result.uncovered and result.unused


def test_an_extra_grant_is_unused() -> None:
    extra = {"who": "export_function", "role": "roles/storage.objectViewer", "on": "project/bucket:landing",
             "terraform": "google_storage_bucket_iam_member.export_function"}
    assert simulate(table()["calls"], [*table()["grants"], extra]).unused == [extra]


def test_a_terraform_grant_without_a_row_or_with_another_role_is_reported() -> None:
    resources = copy.deepcopy(iam_resources())
    resources["google_project_iam_member.extra"] = {"project": "${var.project_id}", "role": "roles/editor",
                                                    "member": "${local.build}"}
    resources["google_project_iam_member.build_logs"]["role"] = "roles/logging.admin"
    problems = terraform_mismatches(resources)
    assert any("google_project_iam_member.extra" in p and "without a row" in p for p in problems)
    assert any("build_logs" in p and "role differs" in p for p in problems)


@pytest.mark.parametrize("address", ["google_project_iam_member.build_sources",
                                     "google_project_iam_member.functions_log_view"])
def test_a_project_grant_without_its_condition_is_reported(address: str) -> None:
    resources = copy.deepcopy(iam_resources())
    del resources[address]["condition"]
    assert any(address in p for p in terraform_mismatches(resources))


# --- Defect 7: the narrow grants, as the table and Terraform now hold them. ---

def test_functions_get_custom_roles_not_dicom_editor() -> None:
    assert all(g["role"] != "roles/healthcare.dicomEditor" for g in table()["grants"])
    assert custom_role_permissions() == {"custom:import": ["healthcare.dicomStores.import"],
                                         "custom:export": ["healthcare.dicomStores.export"],
                                         "custom:operations": ["healthcare.operations.get"]}


def test_build_writes_only_to_its_repository_and_the_agent_reads_only_two_staging_folders() -> None:
    build = {(g["role"], g["on"]) for g in table()["grants"] if g["who"] == "build"}
    assert ("roles/artifactregistry.writer", "project/artifact_repository") in build
    assert not any(role == "roles/artifactregistry.writer" and on == "project" for role, on in build)
    agent_staging = {g["on"] for g in table()["grants"]
                     if g["who"] == "healthcare_agent" and g["on"].startswith("project/bucket:staging")}
    assert agent_staging == {"project/bucket:staging/folder:staging/import/",
                             "project/bucket:staging/folder:filters/export/"}
