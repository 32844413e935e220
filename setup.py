"""Build azsim: the Python packages plus the `azsim._native` C++17 extension.

The build is portable by default. Opt-in switches (environment variables):
  AZSIM_NATIVE_ARCH=1  compile with -march=native (faster, not portable)
  AZSIM_ASAN=1         compile with AddressSanitizer + UBSan (for codec tests)
"""
import glob
import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

sources = sorted(
    glob.glob("csrc/*.cpp")
    + glob.glob("csrc/azsim/*.cpp")
    + glob.glob("csrc/azsim/formats/*.cpp")
)
extra_compile = ["-O3", "-fno-math-errno"]
extra_link = []
if os.environ.get("AZSIM_NATIVE_ARCH") == "1":
    extra_compile.append("-march=native")
if os.environ.get("AZSIM_ASAN") == "1":
    extra_compile = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    extra_link = ["-fsanitize=address,undefined"]

ext = Pybind11Extension(
    "azsim._native",
    sources,
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=extra_compile,
    extra_link_args=extra_link,
)

setup(
    name="azsim",
    version="0.1.0",
    description="Hardware-software codesign simulator for on-device speech recognition",
    packages=find_packages(include=["azsim", "azsim.*", "asr", "asr.*"]),
    package_data={"azsim": ["presets/*.toml"]},
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    python_requires=">=3.11",
    # Exact pins: these versions produced the figures in the README.
    install_requires=[
        "numpy==2.4.6",
        "scipy==1.17.1",
        "numba==0.68.1",
        "jiwer==4.0.0",
        "rapidfuzz==3.14.6",     # also a jiwer dependency; slot rescoring uses it directly
        "tqdm==4.70.1",
        "threadpoolctl==3.6.0",  # one BLAS thread while the biasing experiment times decoding
        "espeakng-loader==0.2.4",
        "tomli-w==1.2.0",
        "matplotlib==3.11.2",
        "dask[distributed]==2026.8.0",
    ],
    extras_require={
        "train": ["torch==2.13.0"],
        "test": ["pytest==9.2.0", "hypothesis==6.170.15", "pytest-benchmark==5.3.1", "pillow>=10"],
    },
    entry_points={"console_scripts": ["azsim=azsim.cli:main"]},
)
