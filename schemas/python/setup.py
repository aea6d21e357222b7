"""Builds fortnight-messages from the JSON Schemas in the directory above (Fortnight's
`schemas/`, generated from the Rust types): they are copied into the package as they are, and
each one gets an entry point in fedora-messaging's `fedora.messages` group named after its
topic, so a new schema file is a new message class with nothing to list by hand."""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE.parent
class_name = runpy.run_path(str(HERE / "fortnight_messages" / "names.py"))["class_name"]


def schema_files():
    files = sorted(SCHEMAS.glob("*.json"))
    if not files:
        raise SystemExit(
            f"no *.json schemas in {SCHEMAS}: build fortnight-messages from schemas/python "
            "in Fortnight's repository (`pip install ./schemas/python`)"
        )
    return files


def entry_points():
    names = [f"{p.stem} = fortnight_messages:{class_name(p.stem)}" for p in schema_files()]
    return {"fedora.messages": names}


class BuildWithSchemas(build_py):
    """Puts the schema files next to the module, where it loads them from."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "fortnight_messages" / "schemas"
        # A schema removed from the repository must not linger from an earlier build.
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in schema_files():
            shutil.copyfile(path, target / path.name)


setup(
    packages=["fortnight_messages"],
    entry_points=entry_points(),
    cmdclass={"build_py": BuildWithSchemas},
)
