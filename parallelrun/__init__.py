"""parallelrun: batch inference on Kubernetes or on one machine."""

import os as _os

# The operator's source folder (the repository's operator/) has no __init__.py, so that
# an interpreter started in the repository root never takes it for the standard
# library's `operator`. An installed wheel has it at parallelrun/operator/; setuptools'
# editable installs cannot map a folder without __init__.py (pypa/setuptools#4943), so
# in a source checkout the package also searches the repository root.
_here = _os.path.dirname(__file__)
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "operator")) and _os.path.isfile(_os.path.join(_root, "operator",
                                                                                          "main.py")):
    __path__.append(_root)
