"""Where a pipeline's components and code come from, off the cluster: files over fsspec.

`ComponentFiles` is the component resolver local mode and `parallelrun validate` give
`load_pipeline`; it keeps each file's bytes for the step's fingerprint. `code_digest`
digests a step's code (a folder or a file) for the same fingerprint.
"""

from __future__ import annotations

from ..storage import filesystem, storage_error
from .component import Component, ComponentError, load_component_text
from .resolve import component_base_dir
from .reuse import folder_digest
from .spec import ComponentRef


class ComponentFiles:
    """Loads component files by URI (any fsspec URL or path), each once."""

    def __init__(self) -> None:
        self._texts: dict[ComponentRef, bytes] = {}

    def __call__(self, ref: ComponentRef) -> Component:
        if ref.uri is None:
            raise ComponentError([f"configMap {ref.config_map}: a component in a ConfigMap is read on a cluster; "
                                  "here give component.uri, the path or URL of its file"])
        if ref not in self._texts:
            try:
                fs, path = filesystem(ref.uri)
                self._texts[ref] = fs.cat_file(path)
            except FileNotFoundError:
                raise ComponentError(["no such file"]) from None
            except Exception as error:  # a storage fault in one line, reported with the step
                fault = storage_error(error, ref.uri)
                if fault is None:
                    raise
                raise ComponentError([f"cannot read it: {fault}"]) from None
        return load_component_text(self._texts[ref], base_dir=component_base_dir(ref))

    def text(self, ref: ComponentRef | None) -> bytes | None:
        """The bytes of a component file loaded before (None for a step with no component)."""
        return self._texts.get(ref) if ref is not None else None


def code_digest(location: str) -> str | None:
    """The digest of a code folder (`reuse.folder_digest`); None for a ConfigMap or a missing folder,
    which then does not count (the step fails when it runs, if it needs the code)."""
    if location.startswith("configMap:"):
        return None
    fs, path = filesystem(location)
    if not fs.exists(path):
        return None
    return folder_digest(fs, path)
