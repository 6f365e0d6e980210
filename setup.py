"""Packaging beyond pyproject.toml: ship the checkout's ``conf/`` inside the package as ``hyperpred.conf``.

conf/ stays the one copy a checkout edits; a wheel (``pip install .``) carries it as
``hyperpred/conf`` for Hydra's ``pkg://hyperpred.conf``, and an editable install maps
``hyperpred.conf`` to conf/ itself. ``hyperpred.console`` picks the checkout's folder when there is one.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["hyperpred", "hyperpred.*"]), "hyperpred.conf"],
    package_dir={"hyperpred.conf": "conf"},
    package_data={"hyperpred.conf": ["*.yaml", "**/*.yaml"]},
)
