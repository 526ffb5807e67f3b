"""Writes the JSON schemas kubeconform validates the chart against, all offline.

* Kubernetes' own kinds: the strict schemas the kubernetes-validate package ships for one
  Kubernetes version. Their ``$ref``s point into a shared definitions file by an absolute
  path kubeconform cannot resolve, so each kind is written self-contained (the
  definitions it needs copied under ``$defs``, references made local).
* Custom resources (KEDA's, the Prometheus operator's ServiceMonitor): each CRD version's
  ``openAPIV3Schema`` converted to JSON schema, with ``additionalProperties: false``
  wherever the CRD lists properties and does not preserve unknown fields, so a misspelt
  field is an error, as the API server would make it.

File names follow kubeconform's default ``{kind}-{group prefix}-{version}.json``.

Usage: python offline_schemas.py OUT_DIR KUBERNETES_VERSION CRD_FILE...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

DEFS_REF = "/api/_definitions.json#/$defs/"


def kubernetes_schemas(out: Path, version: str) -> int:
    source = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{version}-local-strict"
    )
    if not source.is_dir():
        raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {version}")
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    count = 0
    for path in sorted(source.glob("*.json")):
        if path.name.startswith("_") or path.name == "all.json":
            continue
        schema = json.loads(path.read_text())
        needed: dict[str, Any] = {}
        schema = _localise(schema, definitions, needed)
        schema["$defs"] = needed
        (out / path.name).write_text(json.dumps(schema))
        count += 1
    return count


def _localise(node: Any, definitions: dict[str, Any], needed: dict[str, Any]) -> Any:
    """Rewrites references to local ones, copying each referenced definition once."""
    if isinstance(node, list):
        return [_localise(item, definitions, needed) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            name = value.removeprefix(DEFS_REF).removeprefix("#/$defs/")
            if name not in needed:
                needed[name] = {}  # placeholder: breaks reference cycles
                needed[name] = _localise(definitions[name], definitions, needed)
            result[key] = f"#/$defs/{name}"
        else:
            result[key] = _localise(value, definitions, needed)
    return result


def crd_schemas(out: Path, crd_file: Path) -> int:
    count = 0
    for crd in yaml.safe_load_all(crd_file.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        kind = spec["names"]["kind"].lower()
        group_prefix = spec["group"].split(".")[0]
        for version in spec["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            properties = schema.setdefault("properties", {})
            properties["apiVersion"] = {"enum": [f"{spec['group']}/{version['name']}"]}
            properties["kind"] = {"enum": [spec["names"]["kind"]]}
            name = f"{kind}-{group_prefix}-{version['name']}.json"
            (out / name).write_text(json.dumps(schema))
            count += 1
    return count


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _strict(value) for key, value in node.items()}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    # int-or-string fields have no JSON schema type; they accept either.
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return node


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    kinds = kubernetes_schemas(out, argv[1].removeprefix("v"))
    custom = sum(crd_schemas(out, Path(name)) for name in argv[2:])
    print(f"offline schemas: {kinds} Kubernetes kinds, {custom} custom resource versions in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
