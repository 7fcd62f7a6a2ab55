"""Installs tabpipe; runtime dependencies come from requirements.txt (one list for pip, Docker and setup)."""
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent


def _requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="tabpipe",
    version="0.1.0",
    description="Configuration-driven training, gating, versioning and serving of tabular classifiers",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_namespace_packages("src", include=["tabpipe*"]),
    include_package_data=True,
    package_data={"tabpipe": ["defaults/*", "reports/*.json", "serving/templates/*", "history/migrations/*.py",
                              "history/migrations/*.mako", "history/migrations/versions/*.py"]},
    install_requires=_requirements(),
    entry_points={"console_scripts": ["tabpipe=tabpipe.cli:main"]},
)
