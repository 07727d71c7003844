"""The pilot bundle: built reproducibly, standard library only, run the way a bare worker node runs it (the
system python3, an empty environment, ``-I -S``) against the dev server."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import autopilot_ops
from autopilot_ops.pilot import bundle as bundle_module
from autopilot_ops.pilot.bundle import Bundle, BundleError, build_bundle

SYSTEM_PYTHON = "/usr/bin/python3"
QUEUE = "BARE_QUEUE"

pytestmark = pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs the system python3")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Bundle:
    return build_bundle(tmp_path_factory.mktemp("dist"))


def bare(home: Path, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``command`` as a worker node runs it: ``env -i PATH=/usr/bin:/bin HOME=<home>``."""
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}"]
    return subprocess.run([*env, *command], capture_output=True, text=True, timeout=timeout, cwd=home)


def test_the_bundle_is_one_zipapp_with_its_sha256(built):
    version = autopilot_ops.__version__
    assert built.path.name == f"autopilot-pilot-{version}.pyz" and built.version == version
    assert built.size == built.path.stat().st_size
    assert built.sha256_path.read_text() == f"{built.sha256}  {built.path.name}\n"
    check = subprocess.run(["sha256sum", "-c", built.sha256_path.name], cwd=built.path.parent, capture_output=True)
    assert check.returncode == 0, check.stdout


def test_the_build_is_reproducible(built, tmp_path):
    again = build_bundle(tmp_path / "again")
    assert again.sha256 == built.sha256
    assert again.path.read_bytes() == built.path.read_bytes()
    for seed in ("1", "2"):  # other processes, other string hashes
        command = [sys.executable, "-m", "autopilot_ops.cli.main", "pilot", "bundle", "-o", str(tmp_path / seed)]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        assert f"sha256={built.sha256}" in result.stdout


def test_set_constants_compile_to_the_same_bytes_whatever_the_hash_seed(tmp_path):
    source = b"def f(x):\n    return x in {'alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'}\n"
    script = (
        "import sys; from autopilot_ops.pilot.bundle import _bytecodes\n"
        f"sys.stdout.buffer.write(_bytecodes({{'m.py': {source!r}}})['m.py'])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed}
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_the_bundle_holds_only_the_pilot(built):
    with zipfile.ZipFile(built.path) as archive:
        names = archive.namelist()
    modules = {name[:-3].replace("/", ".").removesuffix(".__init__") for name in names if name.endswith(".py")}
    assert {"autopilot_ops.pilot.loop", "autopilot_ops.panda.client", "autopilot_ops.pilot.movers.http"} <= modules
    assert "autopilot_ops.pilot.vo.generic" in modules and "__main__" in modules
    outside = [m for m in modules if m.startswith(("autopilot_ops.airflow", "autopilot_ops.scheduler",
                                                   "autopilot_ops.store", "autopilot_ops.panda.devserver",
                                                   "autopilot_ops.backends", "autopilot_ops.cli"))]
    assert outside == [] and "autopilot_ops.pilot.bundle" not in modules
    assert names == sorted(names, key=lambda name: name.removesuffix("c"))  # sorted; each .pyc after its .py


def test_every_module_of_the_bundle_imports_with_the_standard_library_alone(built, tmp_path):
    with zipfile.ZipFile(built.path) as archive:
        modules = sorted(
            name[:-3].replace("/", ".").removesuffix(".__init__")
            for name in archive.namelist()
            if name.endswith(".py") and name != "__main__.py"
        )
    script = (
        f"import sys; sys.path.insert(0, {str(built.path)!r})\n"
        f"for name in {modules!r}: __import__(name)\n"
        "outside = sorted({m.partition('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
        " - {'autopilot_ops', '__main__'})\n"
        "print('outside:', outside)\n"
        "print('from:', sorted({sys.modules[m].__file__.startswith(sys.path[0]) for m in sys.modules"
        " if m.startswith('autopilot_ops')}))\n"
    )
    result = bare(tmp_path, SYSTEM_PYTHON, "-I", "-S", "-c", script)
    assert result.returncode == 0, result.stderr
    assert "outside: []" in result.stdout and "from: [True]" in result.stdout


def test_the_builder_refuses_a_module_importing_outside_the_standard_library(monkeypatch, tmp_path):
    rogue = tmp_path / "rogue.py"
    rogue.write_text("def f():\n    import requests\n")
    monkeypatch.setattr(bundle_module, "ROOTS", ("autopilot_ops.rogue",))
    monkeypatch.setattr(bundle_module, "_source_of", lambda module: rogue if module == "autopilot_ops.rogue" else None)
    with pytest.raises(BundleError, match=r"autopilot_ops.rogue .*imports 'requests'"):
        bundle_module.pilot_modules()


def test_on_a_bare_node_the_bundle_runs_dev_server_jobs_to_finished(built, panda, tmp_path, make_script):
    trf = make_script("bare.sh", 'echo "bare node $PANDAID"\n')
    ids = panda.submit_jobs(QUEUE, 2, str(trf), "")
    (tmp_path / "work").mkdir()
    result = bare(
        tmp_path,
        SYSTEM_PYTHON, "-I", "-S", str(built.path), "run",
        "--queue", QUEUE, "--server", panda.url, "--workdir", str(tmp_path / "work"),
        "--max-jobs", "2", "--time-floor", "600",
    )
    assert result.returncode == 0, result.stderr
    assert [panda.job(panda_id)["status"] for panda_id in ids] == ["finished", "finished"]
    assert f"version={built.version}" in result.stderr


#: Standard modules the pilot must not load: ``dataclasses`` (with the ``inspect``, ``ast`` and ``dis`` it imports)
#: and ``typing`` cost 1.6 MiB of the 16 MiB peak RSS the bench holds the pilot to (``autopilot_ops.record``).
HEAVY_MODULES = {"dataclasses", "inspect", "typing"}

#: Runs a bundle as ``python3 bundle.pyz`` does (the zip first on the path, its ``__main__`` as ``__main__``),
#: writing the names of the modules loaded at exit to ``argv[1]``. Not ``runpy.run_path``: its ``pkgutil`` imports
#: ``typing``; not ``-X importtime``: it misses what ``importlib.import_module`` loads (the data movers).
LOADED_AT_EXIT = (
    "import atexit, sys, zipimport\n"
    "listing, sys.argv = sys.argv[1], sys.argv[2:]\n"
    "sys.path.insert(0, sys.argv[0])\n"
    "atexit.register(lambda: open(listing, 'w').write('\\n'.join(sorted(sys.modules))))\n"
    "exec(zipimport.zipimporter(sys.argv[0]).get_code('__main__'), {'__name__': '__main__'})\n"
)


def test_running_jobs_the_bundle_loads_neither_dataclasses_nor_typing(built, panda, tmp_path, make_script):
    trf = make_script("light.sh", "echo light > out.txt\n")
    ids = panda.submit_jobs(QUEUE, 1, str(trf), "", out_files=["out.txt"])
    (tmp_path / "work").mkdir()
    listing = tmp_path / "modules.txt"
    result = bare(
        tmp_path,
        SYSTEM_PYTHON, "-I", "-S", "-c", LOADED_AT_EXIT, str(listing), str(built.path), "run",
        "--queue", QUEUE, "--server", panda.url, "--workdir", str(tmp_path / "work"),
        "--max-jobs", "1", "--time-floor", "600",
    )
    assert result.returncode == 0, result.stderr
    assert panda.job(ids[0])["status"] == "finished"
    loaded = set(listing.read_text().split())
    assert {"autopilot_ops.pilot.jobrun", "autopilot_ops.pilot.movers.file", "tarfile"} <= loaded  # a whole job
    assert loaded & HEAVY_MODULES == set()


def test_the_bundle_takes_exactly_the_options_of_autopilot_pilot_run(built, tmp_path):
    ours = bare(tmp_path, SYSTEM_PYTHON, "-I", "-S", str(built.path), "run", "--help")
    installed = subprocess.run(
        [sys.executable, "-m", "autopilot_ops.cli.main", "pilot", "run", "--help"], capture_output=True, text=True
    )
    assert ours.returncode == 0 and installed.returncode == 0, ours.stderr + installed.stderr

    def options(text: str) -> str:
        return text[text.index("\noptions:"):]

    assert options(ours.stdout) == options(installed.stdout)


def test_the_bundle_has_no_bundle_command(built, tmp_path):
    result = bare(tmp_path, SYSTEM_PYTHON, "-I", "-S", str(built.path), "bundle")
    assert result.returncode == 2 and "invalid choice: 'bundle'" in result.stderr


def test_autopilot_pilot_bundle_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autopilot_ops.cli.main", "pilot", "bundle", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "out" / f"autopilot-pilot-{autopilot_ops.__version__}.pyz"
    assert result.stdout.startswith(f"{path} version=") and Path(f"{path}.sha256").is_file()
