"""Check what `sam build` produced: every function's handler, and a layer that holds the tollgate
package with its data files, the shipped tiktoken encodings, tiktoken itself, and only wheels that
load on the Lambda runtime (Amazon Linux 2, glibc 2.26).

    python scripts/check_sam_build.py [.aws-sam/build]
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from tollgate_local.template import default_template, function_ids, function_properties, resources_of_type

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_PACKAGE = REPO_ROOT / "layers" / "tollgate" / "tollgate"
# Files of the shared package that are data, not code: each must reach the layer unchanged.
DATA_GLOBS = ("data/*", "data/templates/*", "tokens/tiktoken_cache/*")
MAX_GLIBC = (2, 26)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def _glibc_needed(wheel_metadata: str) -> tuple[int, int] | None:
    """The oldest glibc any of a wheel's Linux tags accepts (None: not a Linux binary wheel)."""
    found: list[tuple[int, int]] = []
    for platform in re.findall(r"^Tag: [^-]+-[^-]+-(.+)$", wheel_metadata, re.MULTILINE):
        for tag in platform.split("."):
            if match := re.match(r"manylinux_(\d+)_(\d+)_", tag):
                found.append((int(match[1]), int(match[2])))
            elif (legacy := tag.split("_", 1)[0]) in _LEGACY_MANYLINUX:
                found.append(_LEGACY_MANYLINUX[legacy])
    return min(found) if found else None


def _check_layer(python_dir: Path) -> list[str]:
    problems: list[str] = []
    package = python_dir / "tollgate"
    if not (package / "__init__.py").is_file():
        return [f"{package}/__init__.py is missing: the layer does not hold the tollgate package"]
    for pattern in DATA_GLOBS:
        sources = sorted(p for p in SHARED_PACKAGE.glob(pattern) if p.is_file())
        if not sources:
            problems.append(f"no source files match tollgate/{pattern}")
        for source in sources:
            built = package / source.relative_to(SHARED_PACKAGE)
            if not built.is_file():
                problems.append(f"{built} is missing")
            elif _sha256(built) != _sha256(source):
                problems.append(f"{built} differs from {source}")
    for needed in ("tiktoken/__init__.py", "tiktoken_ext/openai_public.py", "pydantic/__init__.py"):
        if not (python_dir / needed).is_file():
            problems.append(f"{python_dir / needed} is missing")
    for wheel in python_dir.glob("*.dist-info/WHEEL"):
        needs = _glibc_needed(wheel.read_text())
        if needs is not None and needs > MAX_GLIBC:
            problems.append(f"{wheel.parent.name} needs glibc {needs[0]}.{needs[1]}: Lambda has 2.26")
    return problems


def main(argv: list[str]) -> int:
    build_dir = Path(argv[1] if len(argv) > 1 else ".aws-sam/build")
    template = default_template()
    problems: list[str] = []
    layers = resources_of_type(template, "AWS::Serverless::LayerVersion")
    for logical_id in layers:
        problems += _check_layer(build_dir / logical_id / "python")
    for function_id in function_ids(template):
        module = str(function_properties(template, function_id)["Handler"]).rsplit(".", 1)[0]
        handler_file = build_dir / function_id / f"{module.replace('.', '/')}.py"
        if not handler_file.is_file():
            problems.append(f"{handler_file} is missing")
    if problems:
        print("sam build output is incomplete:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    functions = len(function_ids(template))
    print(f"sam build output OK: {len(layers)} layer(s), {functions} function(s) in {build_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
