"""``autopilot pilot bundle``: the pilot as one zipapp, ``autopilot-pilot-<version>.pyz``, for bare worker nodes.

The bundle holds the pilot's import closure (from ``autopilot_ops.pilot.__main__`` and this package's own data
movers and VO plugins; no Airflow, scheduler, store or dev-server code), each module as source and as an
unchecked hash-based ``.pyc`` of the building Python (another Python version compiles the sources as it
imports them). Every import outside ``autopilot_ops`` must be of the standard library, or the build fails.
It runs as ``python3 -I -S autopilot-pilot-<version>.pyz run ...`` with the options of ``autopilot pilot run``.

The build is deterministic: sorted entries, fixed timestamps and modes, so one source tree built by one Python
gives the same bytes and the same sha256. Beside the bundle goes ``<bundle>.sha256`` in ``sha256sum`` format.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import marshal
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import autopilot_ops
from autopilot_ops.pilot.movers.base import BUILTIN as BUILTIN_MOVERS
from autopilot_ops.pilot.vo.base import BUILTIN as BUILTIN_VOS

PACKAGE = "autopilot_ops"
#: Where the pilot's closure starts: its command line and the plugins it finds by name.
ROOTS = (
    "autopilot_ops.pilot.__main__",
    *sorted({target.partition(":")[0] for target in (*BUILTIN_MOVERS.values(), *BUILTIN_VOS.values())}),
)
#: Imported lazily by the pilot's command line, but no part of the pilot: the builder itself.
EXCLUDED = ("autopilot_ops.pilot.bundle",)
BUNDLE_NAME = "autopilot-pilot-{version}.pyz"
#: The zip's fixed timestamp (the earliest a zip can hold) and file mode.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MODE = 0o644 << 16
MAIN = (
    '"""The AutoPilot pilot bundle: python3 -I -S autopilot-pilot.pyz run --queue Q --server URL ..."""\n'
    "import sys\n\n"
    "from autopilot_ops.pilot.__main__ import main\n\n"
    "sys.exit(main(bundle_command=False))\n"
)


class BundleError(Exception):
    """The pilot cannot be bundled: a module of its closure imports something outside the standard library, or
    does not compile."""


@dataclass(frozen=True)
class Bundle:
    """A built bundle: its file, its sha256 (hex), the package version it holds, its size in bytes."""

    path: Path
    sha256: str
    version: str
    size: int

    @property
    def sha256_path(self) -> Path:
        """The ``sha256sum``-format file beside the bundle."""
        return self.path.with_name(self.path.name + ".sha256")


def _source_of(module: str) -> Path | None:
    """The file of ``module`` within this package, or None when it is not a module of it."""
    root = Path(autopilot_ops.__file__).parent
    parts = module.split(".")[1:]
    package = root.joinpath(*parts, "__init__.py")
    if package.is_file():
        return package
    plain = root.joinpath(*parts).with_suffix(".py") if parts else None
    return plain if plain is not None and plain.is_file() else None


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports by an ``import`` statement, at its top or in a function (absolute names;
    ``from a import b`` gives both ``a`` and ``a.b``, as ``b`` may be a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def pilot_modules() -> dict[str, Path]:
    """The pilot's import closure within this package, ``{module: source file}``, parent packages included;
    raises :class:`BundleError` naming a module that imports outside the standard library."""
    stdlib = sys.stdlib_module_names
    found: dict[str, Path] = {}
    todo = list(ROOTS)
    while todo:
        module = todo.pop()
        if module in found or module in EXCLUDED:
            continue
        path = _source_of(module)
        if path is None:
            continue  # a name imported from a module, not a module
        found[module] = path
        parent = module.rpartition(".")[0]
        if parent:
            todo.append(parent)
        for name in _imports(path):
            top = name.partition(".")[0]
            if top == PACKAGE:
                todo.append(name)
            elif top not in stdlib and top != "__future__":
                raise BundleError(f"{module} ({path}) imports {name!r}, which is not in Python's standard library")
    return found


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = _MODE
    info.create_system = 3
    return info


#: Compiles ``{arcname: source}`` from stdin to ``{arcname: marshalled code}`` on stdout.
_COMPILER = (
    "import marshal, sys\n"
    "sources = marshal.load(sys.stdin.buffer)\n"
    "marshal.dump({name: marshal.dumps(compile(text, name, 'exec', dont_inherit=True))"
    " for name, text in sources.items()}, sys.stdout.buffer)\n"
)


def _bytecodes(sources: dict[str, bytes]) -> dict[str, bytes]:
    """Unchecked hash-based ``.pyc`` files (PEP 552: no timestamp) of ``sources``, compiled by this Python in a
    child with a fixed hash seed: before Python 3.11, marshal writes a set constant in the order of its strings'
    hashes, which otherwise change with every process."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-S", "-c", _COMPILER], input=marshal.dumps(sources), capture_output=True, env=env
    )
    if done.returncode != 0:
        raise BundleError(f"compiling the pilot's modules failed: {done.stderr.decode(errors='replace').strip()}")
    flags = (0b01).to_bytes(4, "little")  # hash-based, not checked against the source: a bundle never changes
    return {
        name: importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(sources[name]) + code
        for name, code in marshal.loads(done.stdout).items()
    }


def write_zipapp(target: Path, modules: dict[str, Path]) -> None:
    """Write the zipapp of ``modules`` to ``target``: a shebang, then sorted entries with fixed metadata."""
    root = Path(autopilot_ops.__file__).parent.parent
    files = {"__main__.py": MAIN.encode()}
    for path in modules.values():
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    bytecodes = _bytecodes({name: data for name, data in files.items() if name != "__main__.py"})
    with open(target, "wb") as handle:
        handle.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(handle, "w") as archive:
            for name in sorted(files):
                archive.writestr(_entry(name), files[name], compresslevel=9)
                if name != "__main__.py":
                    archive.writestr(_entry(name[:-3] + ".pyc"), bytecodes[name], compresslevel=9)


def build_bundle(directory: Path) -> Bundle:
    """Build ``autopilot-pilot-<version>.pyz`` and its ``.sha256`` in ``directory`` (made if missing); each file
    appears whole (written aside, then renamed), so a server may hand it out while a build replaces it."""
    version = autopilot_ops.__version__
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / BUNDLE_NAME.format(version=version)
    modules = pilot_modules()
    handle, scratch = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write_zipapp(Path(scratch), modules)
        data = Path(scratch).read_bytes()
        os.chmod(scratch, 0o755)
        os.replace(scratch, path)
    finally:
        Path(scratch).unlink(missing_ok=True)
    bundle = Bundle(path=path, sha256=hashlib.sha256(data).hexdigest(), version=version, size=len(data))
    sidecar = directory / f".{bundle.sha256_path.name}.part"
    sidecar.write_text(f"{bundle.sha256}  {path.name}\n")
    os.replace(sidecar, bundle.sha256_path)
    return bundle
