# The native core is a cffi extension: setuptools builds it during `pip install` (see
# build_native.py), and the preload library (preload/syscallbuf.c) beside it. Everything else
# is declared in pyproject.toml.
import os
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

# Freestanding: the preload runs inside the application's syscalls, so it uses no libc, no
# vector registers (the application's are live at the site) and no red zone (its inline asm
# calls the syscall page).
PRELOAD_CFLAGS = ["-shared", "-fPIC", "-O2", "-Wall", "-std=gnu11", "-nostdlib", "-ffreestanding",
                  "-fno-builtin", "-mgeneral-regs-only", "-mno-red-zone", "-fno-stack-protector",
                  "-fno-tree-loop-distribute-patterns", "-fvisibility=hidden", "-Wl,-z,now",
                  "-Wl,--hash-style=both"]


class BuildWithPreload(build_ext):
    def run(self):
        super().run()
        out_dir = (os.path.join(HERE, "preload") if self.inplace
                   else os.path.join(self.build_lib, "rrverify", "preload"))
        os.makedirs(out_dir, exist_ok=True)
        cc = os.environ.get("CC", "gcc")
        subprocess.check_call([cc, *PRELOAD_CFLAGS, "-I", os.path.join(HERE, "rrverify", "native"),
                               "-o", os.path.join(out_dir, "librrvpreload.so"),
                               os.path.join(HERE, "preload", "syscallbuf.c")])


setup(cffi_modules=["build_native.py:ffibuilder"], cmdclass={"build_ext": BuildWithPreload})
