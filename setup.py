"""Packaging beyond what pyproject.toml can say: the dashboards and scenarios folders of the
source tree ship inside the package as data (``twin/_data/dashboards``,
``twin/_data/scenarios``; twin/tools.py finds them there or in a source checkout), without
moving them in the repository."""

from setuptools import find_packages, setup

DATA_DIRS = {
    "twin._data.dashboards": "dashboards",
    "twin._data.dashboards.views": "dashboards/views",
    "twin._data.scenarios": "scenarios",
}

setup(
    packages=[*find_packages(include=["twin", "twin.*"]), *DATA_DIRS],
    package_dir=DATA_DIRS,
    package_data={
        "twin": ["py.typed", "chain/contracts/*.sol", "chain/contracts/compiled.json"],
        "twin._data.dashboards": ["*.py"],
        "twin._data.dashboards.views": ["*.py"],
        "twin._data.scenarios": ["*.yaml", "pilots/*.yaml", "regression/*/*.yaml",
                                 "regression/*/*.json"],
    },
    include_package_data=False,
)
