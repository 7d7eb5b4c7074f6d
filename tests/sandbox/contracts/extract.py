#!/usr/bin/env python3
"""Writes a contract: the named operations of a vendor OpenAPI 3 document, verbatim, plus every
component schema they reference (transitively), with the source named in `x-source`.

    python3 extract.py VENDOR.json OUT.json REPO PATH COMMIT "METHOD /path" ...

Operations the vendor document lacks are not invented here: add them by hand afterwards with
their own `x-source` (see README.md). Standard library only.
"""
import json
import sys


def refs(node, out):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/components/"):
            out.add(tuple(r[len("#/components/"):].split("/", 1)))
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def main():
    vendor, out, repo, path, commit, *ops = sys.argv[1:]
    doc = json.load(open(vendor))
    source = {"repository": repo, "path": path, "commit": commit}
    paths = {}
    for op in ops:
        method, template = op.split(" ", 1)
        item = doc["paths"].get(template, {})
        operation = item.get(method.lower())
        if operation is None:
            sys.exit(f"{op}: not in {repo}/{path}")
        operation = dict(operation)
        operation["x-source"] = dict(source, pointer=f"/paths/{template.replace('/', '~1')}/{method.lower()}")
        paths.setdefault(template, {})[method.lower()] = operation
    seen, todo = set(), set()
    refs(paths, todo)
    components = {}
    while todo:
        kind, name = todo.pop()
        if (kind, name) in seen:
            continue
        seen.add((kind, name))
        node = doc["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        refs(node, todo)
    for kind in components:
        components[kind] = dict(sorted(components[kind].items()))
    if "securitySchemes" in doc.get("components", {}):
        components["securitySchemes"] = doc["components"]["securitySchemes"]
    result = {
        "openapi": doc["openapi"],
        "info": doc["info"],
        "x-source": dict(source, note="Extract: the operations Ticket Bridge uses and the schemas they reference, copied verbatim."),
        "paths": dict(sorted(paths.items())),
        "components": components,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
