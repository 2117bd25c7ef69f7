"""Validates the output of `kustomize build` offline, one JSON report on stdout.

    .tools/bin/kustomize build deploy/k8s/overlays/local \
      | .tools/k8s-venv/bin/python scripts/k8s-validate.py --kubernetes-version 1.33 --crds .tools/k8s-crds

Built-in kinds are checked with the schemas kubernetes-validate ships for that Kubernetes release,
strictly (an unknown field is an error, as `kubectl apply` does by default). Custom resources are
checked against the openAPIV3Schema of their CRD when one of the CRD files (scripts/k8s-tools.sh
copies them out of the operators' Go modules) defines their group, kind and version, also
strictly: an object schema that lists its properties admits no others, unless it says
`x-kubernetes-preserve-unknown-fields`, which is what the API server's pruning does. Anything else
is reported as `unchecked`, never as valid. The test (test/unit/k8s.test.ts) reads the report.
"""

import argparse
import copy
import glob
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml


def load_crd_schemas(directory):
    """(group, version, kind) -> the CRD's openAPIV3Schema, made strict."""
    schemas = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        with open(path, encoding="utf-8") as handle:
            for crd in yaml.safe_load_all(handle):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    schema = version.get("schema", {}).get("openAPIV3Schema")
                    if schema:
                        key = (spec["group"], version["name"], spec["names"]["kind"])
                        schemas[key] = {"schema": strict(copy.deepcopy(schema)), "file": os.path.basename(path)}
    return schemas


def strict(schema):
    """Closes every object schema that lists its properties, as structural pruning would."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        # `nullable` is OpenAPI's, not JSON Schema's: let null through where it is allowed.
        if schema.get("nullable") and "type" in schema:
            schema["type"] = [schema["type"], "null"]
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def describe(error):
    where = ".".join(str(p) for p in error.absolute_path) or "(top)"
    return f"{where}: {error.message}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--crds", required=True, help="directory of CRD yaml files")
    args = parser.parse_args()

    crds = load_crd_schemas(args.crds)
    results = []
    for doc in yaml.safe_load_all(sys.stdin):
        if not doc:
            continue
        api_version = doc.get("apiVersion", "")
        kind = doc.get("kind", "")
        name = doc.get("metadata", {}).get("name", "")
        group, _, version = api_version.rpartition("/")
        result = {"apiVersion": api_version, "kind": kind, "name": name}
        try:
            kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
            result.update(status="valid", by=f"kubernetes-validate {args.kubernetes_version}")
        except kubernetes_validate.SchemaNotFoundError:
            crd = crds.get((group, version, kind))
            if crd is None:
                result.update(status="unchecked", reason="no schema: neither built in nor a known CRD")
            else:
                validator = jsonschema.Draft7Validator(crd["schema"])
                errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
                result.update(by=f"CRD {crd['file']}")
                if errors:
                    result.update(status="invalid", errors=[describe(e) for e in errors])
                else:
                    result.update(status="valid")
        except kubernetes_validate.ValidationError as error:
            result.update(status="invalid", errors=[describe(error)])
        results.append(result)
    json.dump(results, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
