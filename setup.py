"""What setup.cfg cannot say: the repository's top-level `experiments/` (the presets) ships inside
the package as `lhl.experiments`, beside the packages under src/; `lhl.config.experiments_dir()`
reads it through importlib.resources. Works for wheels and editable installs alike."""
from setuptools import find_packages, setup

setup(
    packages=find_packages("src") + ["lhl.experiments"],
    package_dir={"": "src", "lhl.experiments": "experiments"},
    package_data={"lhl.experiments": ["*/*.yaml", "*/*.sbatch"]},
)
