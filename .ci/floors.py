"""Prints a pip constraints file that pins every runtime dependency of setup.cfg to its floor
(`>=X` and `==X` become `==X`), so CI can install the oldest versions the package claims to
support (.ci/floors)."""

import configparser
import re
import sys
from pathlib import Path

SPEC = re.compile(r"^\s*([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*(.*)$")
FLOOR = re.compile(r"(?:>=|==)\s*([^,\s;]+)")


def floors(setup_cfg: Path) -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    pins = []
    for line in cfg["options"]["install_requires"].strip().splitlines():
        name, spec = SPEC.match(line).groups()
        floor = FLOOR.search(spec)
        if floor is None:
            sys.exit(f"floors: {line.strip()!r} declares no floor (>=X or ==X)")
        pins.append(f"{name}=={floor.group(1)}")
    return pins


if __name__ == "__main__":
    print("\n".join(floors(Path(sys.argv[1] if len(sys.argv) > 1 else "setup.cfg"))))
