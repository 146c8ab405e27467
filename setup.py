"""Packaging beyond pyproject.toml: the ``unireplknet_timm.pth`` start-up hook (src/_unireplknet_timm.py).

A ``.pth`` file must sit at the root of site-packages, outside any package, which pyproject.toml cannot
declare; it is added to the regular wheel by ``build_py`` and to the editable wheel (``pip install -e .``)
by ``editable_wheel``. Its one line makes ``import timm`` register the UniRepLKNet variants in every process.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "unireplknet_timm.pth"  # sorts after setuptools' __editable__ .pth, which puts src/ on sys.path
PTH_LINE = (
    'import sys; exec("try:\\n import _unireplknet_timm\\nexcept ImportError:\\n pass\\n'
    'else:\\n _unireplknet_timm.install()")\n'
)


def _write_pth(folder: str) -> str:
    path = os.path.join(folder, PTH_NAME)
    with open(path, "w", encoding="utf-8") as f:
        f.write(PTH_LINE)
    return path


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            os.makedirs(self.build_lib, exist_ok=True)
            _write_pth(self.build_lib)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else outputs + [os.path.join(self.build_lib, PTH_NAME)]


class editable_wheel_with_pth(editable_wheel):
    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        _write_pth(unpacked_wheel)  # the unpacked wheel's root is site-packages once installed
        return result


setup(cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth})
