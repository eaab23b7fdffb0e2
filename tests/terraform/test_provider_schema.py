"""Every google/google-beta block of terraform/ against the provider's published schema, at the lowest and the
highest version versions.tf allows (tests/terraform/provider_schema.py; `make provider-schemas` fetches them)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.terraform import provider_schema
from tests.terraform.hcl import parsed_configuration

pytestmark = pytest.mark.skipif(
    not all(provider_schema.schema_path(p, v).exists() for p, v in provider_schema.WHEELS),
    reason="provider schemas missing: `make provider-schemas` (python -m tests.terraform.provider_schema fetch)")


@pytest.mark.parametrize("version", provider_schema.VERSIONS)
def test_configuration_matches_the_provider_schema(version: str) -> None:
    assert provider_schema.check(parsed_configuration(), version) == []


def test_versions_tf_allows_exactly_the_checked_range() -> None:
    (terraform,) = parsed_configuration()["terraform"]
    (providers,) = terraform["required_providers"]
    low, high = provider_schema.VERSIONS[0], provider_schema.VERSIONS[-1]
    for name in ("google", "google-beta"):
        assert re.sub(r"\s", "", providers[name]["version"]) == f">={low},<={high}"


def test_every_google_block_is_checked() -> None:
    blocks = list(provider_schema.configured_blocks(parsed_configuration()))
    assert len(blocks) >= 45
    beta = {f"{t}.{n}" for _, t, n, body in blocks if provider_schema.provider_of(body) == "google-beta"}
    assert beta == {"google_project_service_identity.agents"}


# --- Mutations: each kind of mistake is caught at both versions. ---

def _mutated(change: Any) -> dict[str, list[dict[str, Any]]]:
    parsed = copy.deepcopy(parsed_configuration())
    change({f"{kind}.{t}.{n}": body for kind in ("resource", "data") for group in parsed.get(kind, [])
            for t, named in group.items() for n, body in named.items()})
    return parsed


def _unknown_argument(blocks: dict[str, Any]) -> None:
    blocks["resource.google_pubsub_topic.trigger"]["message_retention"] = "600s"


def _unknown_nested_block(blocks: dict[str, Any]) -> None:
    blocks["resource.google_pubsub_subscription.trigger"]["dead_letter"] = [{"max_delivery_attempts": 5}]


def _unknown_argument_in_a_nested_block(blocks: dict[str, Any]) -> None:
    blocks["resource.google_pubsub_subscription.trigger"]["push_config"][0]["oidc_token"][0]["email"] = "x"


def _unknown_argument_in_dynamic_content(blocks: dict[str, Any]) -> None:
    dynamic = blocks["resource.google_storage_bucket.buckets"]["dynamic"]
    (rule,) = [d["lifecycle_rule"] for d in dynamic if "lifecycle_rule" in d]
    rule["content"][0]["condition"][0]["matches_suffix_regex"] = ".dcm"


def _missing_required_argument(blocks: dict[str, Any]) -> None:
    del blocks["resource.google_storage_managed_folder.agent_readable"]["name"]


def _missing_required_nested_block(blocks: dict[str, Any]) -> None:
    dynamic = blocks["resource.google_storage_bucket.buckets"]["dynamic"]
    (rule,) = [d["lifecycle_rule"] for d in dynamic if "lifecycle_rule" in d]
    del rule["content"][0]["action"]


def _beta_block_on_the_ga_provider(blocks: dict[str, Any]) -> None:
    del blocks["resource.google_project_service_identity.agents"]["provider"]



MUTATIONS = {
    "unknown argument": (_unknown_argument, "google_pubsub_topic.trigger",
                         "unknown argument or block 'message_retention'"),
    "unknown nested block": (_unknown_nested_block, "google_pubsub_subscription.trigger",
                             "unknown argument or block 'dead_letter'"),
    "unknown argument in a nested block": (_unknown_argument_in_a_nested_block,
                                           "google_pubsub_subscription.trigger", "push_config.oidc_token"),
    "unknown argument in dynamic content": (_unknown_argument_in_dynamic_content, "google_storage_bucket.buckets",
                                            "'matches_suffix_regex'"),
    "missing required argument": (_missing_required_argument, "google_storage_managed_folder.agent_readable",
                                  "missing required argument 'name'"),
    "missing required nested block": (_missing_required_nested_block, "google_storage_bucket.buckets",
                                      "missing required block 'action'"),
    "beta block without provider = google-beta": (_beta_block_on_the_ga_provider,
                                                  "google_project_service_identity.agents",
                                                  "is not a resource of google"),
}


@pytest.mark.parametrize("version", provider_schema.VERSIONS)
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_check_catches(mutation: str, version: str) -> None:
    change, where, message = MUTATIONS[mutation]
    problems = provider_schema.check(_mutated(change), version)
    assert len(problems) == 1, problems
    assert where in problems[0] and message in problems[0], problems[0]
