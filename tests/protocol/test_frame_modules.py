"""``cfm_common.frames`` gathers the three frame modules: every public name of
``frame_fields``, ``client_frames`` and ``server_frames`` is reachable as ``frames.X``
(code written before the split keeps working), and each frame class is registered in
the registry of its direction only."""

from __future__ import annotations

import dataclasses
import types

from cfm_common import client_frames, frame_fields, frames, server_frames


def public(module: types.ModuleType) -> set[str]:
    """The names ``module`` defines (not those it imports)."""
    return {name for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
            and getattr(value, "__module__", module.__name__) == module.__name__}


def test_frames_re_exports_every_public_name_of_the_three_modules() -> None:
    for module in (frame_fields, client_frames, server_frames):
        missing = {n for n in public(module) if getattr(frames, n, None) is not getattr(module, n)}
        assert not missing, f"{module.__name__}: {sorted(missing)}"
        assert public(module) <= set(frames.__all__)


def test_each_registered_frame_lives_in_the_module_of_its_direction() -> None:
    for cls in frames.CLIENT_FRAMES.values():
        assert dataclasses.is_dataclass(cls) and cls.__module__ == client_frames.__name__
    for cls in frames.SERVER_FRAMES.values():
        assert dataclasses.is_dataclass(cls) and cls.__module__ == server_frames.__name__
