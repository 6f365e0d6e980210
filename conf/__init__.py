"""The shipped configs. An installed wheel holds this folder as ``hyperpred.conf`` (see setup.py), and
Hydra's ``pkg://`` search path only accepts a package with an ``__init__.py``. No code: configs only."""
