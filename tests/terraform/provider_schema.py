"""The google/google-beta provider schemas, offline, and a check of terraform/ against them.

The provider binary cannot be downloaded here, so `terraform validate` cannot run. The schema is published
on PyPI instead: the CDK for Terraform bindings are generated from the provider's schema, and their wheel
holds a JSII assembly (`_jsii/*.jsii.tgz` → `package/.jsii`) listing, per resource and data source, a Config
struct with every argument and nested block, whether it is optional, and a docs link whose anchor is the
snake_case attribute name. `fetch` downloads each wheel once (`pip download --no-deps`) and keeps only a
compact schema (tens of kB per provider) under .cache/provider-schema/; `check` compares every block of
terraform/*.tf with it.

    python -m tests.terraform.provider_schema fetch   # once (make provider-schemas)
    python -m tests.terraform.provider_schema check   # problems per provider version
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "provider-schema"

# (provider, version) → the PyPI wheel generated from exactly that provider release.
WHEELS: dict[tuple[str, str], str] = {
    ("google", "6.50.0"): "cdktf-cdktf-provider-google==16.12.1",
    ("google-beta", "6.50.0"): "cdktf-cdktf-provider-google-beta==16.12.1",
    ("google", "7.41.0"): "cdktn-provider-google==19.10.0",
    ("google-beta", "7.41.0"): "cdktn-provider-google-beta==19.10.0",
}
VERSIONS = sorted({version for _, version in WHEELS}, key=lambda v: tuple(int(p) for p in v.split(".")))

# Terraform's own meta-arguments and blocks: valid in every resource/data block, absent from the schema.
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
_LINK = re.compile(r"/docs/(resources|data-sources)/([a-z0-9_]+)#([a-z0-9_]+)")
_TYPE_LINK = re.compile(r"/docs/(resources|data-sources)/[a-z0-9_]+ (google_[a-z0-9_]+)\}")


def schema_path(provider: str, version: str) -> Path:
    return CACHE / f"{provider}-{version}.json"


# --- Extraction from the JSII assembly. ---

def _struct_fqn(type_: dict[str, Any], assembly: str) -> str | None:
    """The nested block's struct when the property is one (directly, in a list, or in a union)."""
    if "fqn" in type_:
        return type_["fqn"] if type_["fqn"].startswith(assembly + ".") else None
    if "collection" in type_:
        return _struct_fqn(type_["collection"]["elementtype"], assembly)
    for member in type_.get("union", {}).get("types", []):
        found = _struct_fqn(member, assembly)
        if found:
            return found
    return None


def _snake(prop: dict[str, Any]) -> str:
    match = _LINK.search(prop.get("docs", {}).get("remarks", ""))
    if match:
        return match.group(3)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", prop["name"]).lower()


def _block(types: dict[str, Any], fqn: str, assembly: str, depth: int = 0) -> dict[str, Any]:
    struct = types[fqn]
    properties = list(struct.get("properties", []))
    for parent in struct.get("interfaces", []):
        if parent.startswith(assembly + "."):
            properties += types[parent].get("properties", [])
    attrs: dict[str, bool] = {}
    blocks: dict[str, Any] = {}
    for prop in properties:
        name = _snake(prop)
        nested = _struct_fqn(prop["type"], assembly) if depth < 12 else None
        if nested and types[nested].get("datatype"):
            blocks[name] = {"required": not prop.get("optional", False),
                            **_block(types, nested, assembly, depth + 1)}
        else:
            attrs[name] = not prop.get("optional", False)
    return {"attributes": attrs, "blocks": blocks}


def extract(assembly_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"resource": {type: block}, "data": {type: block}} from a provider's JSII assembly."""
    assembly = assembly_json["name"]
    types = assembly_json["types"]
    out: dict[str, dict[str, Any]] = {"resource": {}, "data": {}}
    for type_ in types.values():
        # cdktf.TerraformResource (cdktf-*) or cdktn.TerraformResource (cdktn-*, its successor)
        base = str(type_.get("base", "")).split(".")[-1]
        if base not in ("TerraformResource", "TerraformDataSource"):
            continue
        match = _TYPE_LINK.search(type_.get("docs", {}).get("summary", ""))
        params = (type_.get("initializer") or {}).get("parameters", [])
        config = [p["type"]["fqn"] for p in params if p["name"] == "config" and "fqn" in p["type"]]
        if not match or not config:
            continue
        kind = "resource" if match.group(1) == "resources" else "data"
        out[kind][match.group(2)] = _block(types, config[0], assembly)
    return out


def _load_assembly(wheel: Path) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(archive.read(name))) as tgz:
            member = tgz.extractfile("package/.jsii")
            assert member is not None
            return json.load(member)


def fetch() -> list[Path]:
    """Download each wheel once and keep its compact schema; the wheel is deleted afterwards (50-70 MB)."""
    written = []
    for (provider, version), requirement in WHEELS.items():
        target = schema_path(provider, version)
        if target.exists():
            written.append(target)
            continue
        wheels = CACHE / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        dist = requirement.split("==")[0].replace("-", "_")
        found = sorted(wheels.glob(f"{dist}-{requirement.split('==')[1]}-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "-d", str(wheels), requirement], check=True)
            found = sorted(wheels.glob(f"{dist}-{requirement.split('==')[1]}-*.whl"))
        assembly = _load_assembly(found[0])
        schema = extract(assembly)
        schema["version"] = version
        schema["source"] = requirement
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")))
        tmp.replace(target)
        found[0].unlink()
        written.append(target)
        print(f"{target.name}: {len(schema['resource'])} resources, {len(schema['data'])} data sources "
              f"from {requirement}")
    return written


def load(provider: str, version: str) -> dict[str, Any]:
    return json.loads(schema_path(provider, version).read_text())


# --- The check. ---

def _bodies(value: Any) -> Iterator[dict[str, Any]]:
    """python-hcl2 gives a block as a list of dicts (one per occurrence); an object attribute as a dict."""
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def check_body(body: dict[str, Any], schema: dict[str, Any], where: str, top: bool = False) -> list[str]:
    problems = []
    present: set[str] = set()
    for key, value in body.items():
        if key.startswith("__") or (top and key in META_ARGUMENTS):
            continue
        if key == "dynamic":  # dynamic "NAME" { content { ... } } stands for NAME blocks
            for dynamic in _bodies(value):
                for name, spec in dynamic.items():
                    present.add(name)
                    if name not in schema["blocks"]:
                        problems.append(f"{where}: unknown nested block {name!r} (dynamic)")
                        continue
                    for spec_body in _bodies(spec):
                        for content in _bodies(spec_body.get("content")):
                            problems += check_body(content, schema["blocks"][name], f"{where}.{name}")
            continue
        present.add(key)
        if key in schema["attributes"]:
            continue
        if key in schema["blocks"]:
            for nested in _bodies(value):
                problems += check_body(nested, schema["blocks"][key], f"{where}.{key}")
            continue
        problems.append(f"{where}: unknown argument or block {key!r}")
    for name, required in schema["attributes"].items():
        if required and name not in present:
            problems.append(f"{where}: missing required argument {name!r}")
    for name, nested in schema["blocks"].items():
        if nested["required"] and name not in present:
            problems.append(f"{where}: missing required block {name!r}")
    return problems


def configured_blocks(parsed: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(resource|data, type, name, body) of every google-provider block in the parsed configuration."""
    for kind in ("resource", "data"):
        for group in parsed.get(kind, []):
            for type_, named in group.items():
                if not type_.startswith("google_"):
                    continue
                for name, body in named.items():
                    yield kind, type_, name, body


def provider_of(body: dict[str, Any]) -> str:
    """google unless the block says provider = google-beta (an alias such as google-beta.x counts as beta)."""
    provider = str(body.get("provider", "google")).strip("${}")
    return provider.split(".")[0]


def check(parsed: dict[str, list[dict[str, Any]]], version: str) -> list[str]:
    """Every problem of the configuration against the schema of `version` (google and google-beta)."""
    schemas = {provider: load(provider, version) for provider in ("google", "google-beta")}
    problems = []
    for kind, type_, name, body in configured_blocks(parsed):
        provider = provider_of(body)
        where = f"{'data.' if kind == 'data' else ''}{type_}.{name} ({provider} {version})"
        if provider not in schemas:
            problems.append(f"{where}: unknown provider {provider!r}")
            continue
        schema = schemas[provider][kind].get(type_)
        if schema is None:
            problems.append(f"{where}: {type_} is not a {kind} of {provider} {version}")
            continue
        problems += check_body(body, schema, where, top=True)
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        fetch()
        return 0
    if argv[:1] == ["check"]:
        from tests.terraform.hcl import parsed_configuration

        total = 0
        for version in VERSIONS:
            problems = check(parsed_configuration(), version)
            total += len(problems)
            print(f"provider {version}: {len(problems)} schema problems")
            for problem in problems:
                print(f"  {problem}")
        return 1 if total else 0
    print("usage: python -m tests.terraform.provider_schema fetch|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
