"""Print a pip constraints file that pins every dependency declared in setup.py to its floor (`pkg>=X` -> `pkg==X`).

pip has no "lowest versions" resolution, so CI installs the package with these constraints in a second, fresh
virtualenv and runs the tests marked `floors` there: the ranges setup.py declares are then ranges that were tested.
setup.py is read with `ast` (not executed, not installed), so this works before anything is installed.

Usage: python .ci/floors.py [setup.py] > floors.txt
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

_FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.+]*)")


def declared_requirements(setup_py: Path) -> list[str]:
    """install_requires plus every extra's list, as written in the `setup(...)` call."""
    tree = ast.parse(setup_py.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            kw = {k.arg: k.value for k in node.keywords}
            reqs = list(ast.literal_eval(kw["install_requires"]))
            for extra in ast.literal_eval(kw.get("extras_require", ast.Constant({}))).values():
                reqs += list(extra)
            return reqs
    raise SystemExit(f"{setup_py}: no setup(...) call found")


def floors(requirements) -> dict[str, str]:
    out: dict[str, str] = {}
    for req in requirements:
        m = _FLOOR.match(req.split(";")[0])
        if m is None:
            raise SystemExit(f"requirement {req!r} declares no floor (>=): CI cannot test its lowest version")
        name, version = m.group(1).lower(), m.group(2)
        if name in out and out[name] != version:
            raise SystemExit(f"{name} is declared with two floors: {out[name]} and {version}")
        out[name] = version
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "setup.py")
    for name, version in sorted(floors(declared_requirements(path)).items()):
        print(f"{name}=={version}")
