"""Validates OCSF events (JSON lines on stdin) against the official OCSF
schema of the version and profiles each event declares (ocsf-json-schema:
the compiled schemas of the OCSF project, as JSON Schema), and against the
pinned OCSF models (py-ocsf-models, tools/requirements.txt): every line must
be a valid Detection Finding (class 2004), and must not carry a field the
schema does not know (pydantic would drop it silently, so each event is
compared with its validated form). Prints one line per problem and exits 1
if there is any.
"""

import json
import sys

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
from py_ocsf_models import OCSF_VERSION

_SCHEMAS = {}


def official(version, profiles):
    """The official JSON Schema of a Detection Finding with these profiles."""
    key = (version, tuple(sorted(profiles)))
    if key not in _SCHEMAS:
        schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
        name = schema.lookup_class_name_from_uid(class_uid=2004)
        _SCHEMAS[key] = schema.get_class_schema(name, profiles=sorted(profiles))
    return _SCHEMAS[key]
from py_ocsf_models.events.findings.detection_finding import DetectionFinding


def unknown(given, known, path=""):
    """Keys present in `given` but dropped by the model (`unmapped` is free-form)."""
    found = []
    if isinstance(given, dict) and isinstance(known, dict):
        for key, value in given.items():
            where = f"{path}.{key}" if path else key
            if key not in known:
                found.append(where)
            elif key not in ("unmapped", "data"):
                found.extend(unknown(value, known[key], where))
    elif isinstance(given, list) and isinstance(known, list):
        for i, (g, k) in enumerate(zip(given, known)):
            found.extend(unknown(g, k, f"{path}[{i}]"))
    return found


def main():
    problems, count = [], 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        count += 1
        try:
            event = json.loads(line)
            model = DetectionFinding.model_validate(event)
        except Exception as e:  # noqa: BLE001 - report any failure with its line
            problems.append(f"line {n}: {e}".replace("\n", " "))
            continue
        metadata = event.get("metadata", {})
        try:
            schema = official(metadata.get("version", ""), metadata.get("profiles", []))
            for error in jsonschema.Draft202012Validator(schema).iter_errors(event):
                where = ".".join(str(p) for p in error.absolute_path) or "(event)"
                problems.append(f"line {n}: official OCSF schema: {where}: {error.message}")
        except Exception as e:  # noqa: BLE001 - an unknown version is a problem too
            problems.append(f"line {n}: cannot validate against the official schema: {e}")
        dumped = json.loads(model.model_dump_json(exclude_none=True))
        for field in unknown(event, dumped):
            problems.append(f"line {n}: field {field} is not in the OCSF {OCSF_VERSION} schema")
        if event.get("class_uid") != 2004:
            problems.append(f"line {n}: class_uid is {event.get('class_uid')}, not 2004")
        if event.get("type_uid") != 2004 * 100 + event.get("activity_id", -1):
            problems.append(f"line {n}: type_uid is not class_uid * 100 + activity_id")
        if event.get("metadata", {}).get("version") != OCSF_VERSION:
            problems.append(f"line {n}: metadata.version is not {OCSF_VERSION}")
    for p in problems:
        print(p)
    print(f"{count} events, {len(problems)} problems", file=sys.stderr)
    sys.exit(1 if problems or count == 0 else 0)


if __name__ == "__main__":
    main()
