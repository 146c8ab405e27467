"""Registers the UniRepLKNet variants with timm in every process that imports timm, at no cost until then.

The ``unireplknet`` distribution installs ``unireplknet_timm.pth`` into site-packages, whose one line calls
:func:`install` at interpreter start. That puts a finder on ``sys.meta_path`` that only watches for the
import of ``timm``: once ``timm`` has finished importing, the finder imports :mod:`unireplknet.zoo`, whose
``@register_model`` functions make ``unireplknet_a`` … ``unireplknet_xl`` known to ``timm.create_model``, and
removes itself. So timm's own scripts (``train.py``, ``validate.py``, ``benchmark.py``, ``inference.py``) find
the models unchanged, and a process that never imports timm pays for one list insertion.

This module imports nothing but the standard library (it runs in every interpreter start); it must not
recurse (importing ``unireplknet`` first imports timm from inside the zoo, which is then already in progress)
and a failure to register must never break the import of timm itself (it becomes a warning).
"""
import importlib
import importlib.machinery  # already loaded at start-up (importlib.abc is not: it costs 20-50 ms)
import sys

__all__ = ["install", "TimmRegistrationFinder"]

#: The module whose import triggers the registration, and the module that registers.
TRIGGER = "timm"
REGISTRY = "unireplknet.zoo"


def _register() -> None:
    if REGISTRY in sys.modules:  # registered, or registering now (unireplknet was imported first)
        return
    try:
        importlib.import_module(REGISTRY)
    except Exception as err:  # never break `import timm`
        import warnings

        warnings.warn(f"unireplknet could not register its models with timm: {err!r}", RuntimeWarning,
                      stacklevel=2)


class _RegisteringLoader:
    """Runs the real loader of ``timm``, then the registration."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # get_resource_reader, is_package … of the real loader
        return getattr(self._loader, name)


class TimmRegistrationFinder:
    """A ``sys.meta_path`` entry that answers only for ``timm``: it finds timm's real spec with the other
    finders and wraps its loader so that the registration follows timm's own initialisation."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TRIGGER:
            return None
        _uninstall()  # one shot; also keeps the search below from reaching this finder again
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                spec = find(fullname, path, target) if find is not None else None
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


def _uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, TimmRegistrationFinder)]


def install() -> None:
    """Put the finder on ``sys.meta_path`` (idempotent). When timm is already imported, register now."""
    if TRIGGER in sys.modules:
        _register()
        return
    if not any(isinstance(f, TimmRegistrationFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, TimmRegistrationFinder())
