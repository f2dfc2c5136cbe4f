"""What the wheel ships: the module, the Python layer, type stubs and py.typed."""

import os
import pathlib
import zipfile

import zocalo
from conftest import missing


def test_the_wheel_ships_stubs_and_py_typed():
    wheel = os.environ.get("ZOCALO_TEST_WHEEL")
    if not wheel:
        missing("ZOCALO_TEST_WHEEL is not set (./x test sets it to the wheel ./x wheel built)")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("zocalo/__init__.py", "zocalo/_zocalo.pyi", "zocalo/py.typed", "zocalo/_zocalo.abi3.so"):
        assert name in names, sorted(names)
    # One wheel for every CPython from 3.9 on (the stable ABI).
    assert "-cp39-abi3-" in pathlib.Path(wheel).name


def test_the_installed_package_is_typed():
    pkg = pathlib.Path(zocalo.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_zocalo.pyi").exists()
    assert zocalo.__version__
