"""The sdist and the wheel hold what a user installs, with the license and metadata the project declares."""

import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from mongodb_session_manager import __version__

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = f"mongodb_session_manager-{__version__}"
PACKAGE_FILES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (ROOT / "src" / "mongodb_session_manager").iterdir()
    if path.is_file() and path.suffix in (".py", ".typed")
)
BACKEND_UNAVAILABLE = "Failed to resolve requirements from `build-system.requires`"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``uv build`` of this checkout: the sdist, then the wheel uv builds from that sdist."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [uv, "build", "--sdist", "--wheel", "--out-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0 and BACKEND_UNAVAILABLE in result.stderr:
        pytest.skip(f"the build backend (hatchling) could not be obtained: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr
    return out / f"{DIST_NAME}.tar.gz", out / f"{DIST_NAME}-py3-none-any.whl"


def test_the_sdist_holds_the_package_readme_license_and_pyproject_only(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = sorted(name.removeprefix(f"{DIST_NAME}/") for name in archive.getnames())
        license_text = archive.extractfile(f"{DIST_NAME}/LICENSE").read().decode()  # type: ignore[union-attr]

    # hatchling always adds PKG-INFO and .gitignore.
    assert names == sorted([*PACKAGE_FILES, ".gitignore", "LICENSE", "PKG-INFO", "README.md", "pyproject.toml"])
    for left_out in ("uv.lock", "CLAUDE.md", "benchmarks/", "tests/", "examples/", ".ci/", ".data/"):
        assert not any(name.startswith(left_out) for name in names), left_out
    assert license_text == (ROOT / "LICENSE").read_text()


def test_the_wheel_ships_the_license_the_type_marker_and_the_metadata(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"{DIST_NAME}.dist-info/METADATA").decode()
        license_text = archive.read(f"{DIST_NAME}.dist-info/licenses/LICENSE").decode()

    assert "mongodb_session_manager/py.typed" in names
    assert {f"mongodb_session_manager/{Path(path).name}" for path in PACKAGE_FILES} <= names
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text

    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers
    assert "Requires-Python: >=3.11" in headers
    for classifier in ("Typing :: Typed", "Topic :: Database", "Programming Language :: Python :: 3.13"):
        assert f"Classifier: {classifier}" in headers
    urls = [line.removeprefix("Project-URL: ") for line in headers if line.startswith("Project-URL: ")]
    assert [url.split(", ")[0] for url in urls] == ["Homepage", "Documentation", "Repository", "Issues"]
    assert all(url.split(", ")[1].startswith("https://github.com/mongodb-session-manager/") for url in urls)
