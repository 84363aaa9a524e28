"""Rendering without a display: pick the OpenGL backend before anything imports mujoco or pygame.

MuJoCo, dm_control, PyOpenGL and pygame read their backend from environment variables *at import
time*, so :func:`configure_headless` must run first; every constructor in ``planet_torch.envs``
calls it before its first simulator import. A missing system library then surfaces as one
:class:`UserError` naming the Debian package, not as a traceback from deep inside PyOpenGL.

:class:`PixelRenderer` is the one fast pixel path for every MuJoCo task (dm_control and gymnasium):
one reused ``mujoco.Renderer`` at the final 64×64 size, so there is no resize and only one GL
context per environment.
"""

from __future__ import annotations

import atexit
import ctypes.util
import functools
import os
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from planet_torch.errors import UserError

_INSTALL = {
    "egl": "apt-get install libegl1 libgl1-mesa-dri",
    "osmesa": "apt-get install libosmesa6",
}


@functools.cache
def _find_backend() -> str:
    # find_library runs `ldconfig -p` (milliseconds), hence the cache.
    if ctypes.util.find_library("EGL"):
        return "egl"
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    raise UserError(
        "no headless OpenGL library found: install EGL "
        f"(`{_INSTALL['egl']}`) or OSMesa (`{_INSTALL['osmesa']}`)"
    )


def configure_headless(need_gl: bool = True) -> str:
    """Set MUJOCO_GL, PYOPENGL_PLATFORM and SDL's drivers unless the user set them; return MUJOCO_GL.

    Idempotent and cheap after the first call. Must run before mujoco, dm_control, gymnasium's
    MuJoCo/Box2D envs or pygame are imported, because they read these variables on import.
    ``need_gl=False`` (CarRacing draws with pygame alone) returns ``""`` instead of raising when
    no OpenGL library is installed.
    """
    # pygame (CarRacing) would otherwise look for an X display and a sound card.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    backend = os.environ.get("MUJOCO_GL")
    if not backend:
        try:
            backend = _find_backend()
        except UserError:
            if need_gl:
                raise
            return ""
    os.environ["MUJOCO_GL"] = backend
    if backend == "glfw":
        # Without a display pyGLFW warns once per call ("X11: Failed to open display"); the
        # UserError of gl_errors() already says what failed and what to set instead.
        warnings.filterwarnings("ignore", module="glfw")
    if backend in _INSTALL:
        # PyOpenGL must load the same platform library as MuJoCo, or GL calls hit a NULL context.
        platform = os.environ.setdefault("PYOPENGL_PLATFORM", backend)
        if platform != backend:
            raise UserError(
                f"MUJOCO_GL={backend} but PYOPENGL_PLATFORM={platform}: "
                "set both to the same value or unset PYOPENGL_PLATFORM"
            )
    return backend


def gl_backend() -> str:
    """The OpenGL backend MuJoCo uses in this process (``egl``, ``osmesa``, ``glfw``...)."""
    return configure_headless()


@contextmanager
def gl_errors(what: str) -> Iterator[None]:
    """Turn a failure of ``what`` (an import or GL context creation) into a one-line UserError.

    A missing libOSMesa, for example, shows up as ``AttributeError: 'NoneType' object has no
    attribute 'glGetError'`` while importing mujoco; the user needs the package name instead.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        backend = os.environ.get("MUJOCO_GL", "?")
        fix = _INSTALL.get(backend)
        hint = (
            f"install the library with `{fix}`"
            if fix
            else "set MUJOCO_GL=egl (or unset it to let planet-torch choose)"
        )
        if backend == "osmesa":
            hint += f", or unset MUJOCO_GL to use EGL (`{_INSTALL['egl']}`)"
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        if "MUJOCO_EGL_DEVICE_ID" in reason:  # a GPU index this machine does not have
            hint = "unset MUJOCO_EGL_DEVICE_ID, or set it to one of the GPUs the error names"
        raise UserError(f"{what} failed with MUJOCO_GL={backend} ({reason}); {hint}") from error


def import_mujoco() -> ModuleType:
    """``import mujoco`` after :func:`configure_headless`, with GL failures as UserError."""
    configure_headless()
    with gl_errors("importing mujoco"):
        import mujoco
    return mujoco


# Renderers still open at exit are closed before MuJoCo's and dm_control's atexit hooks terminate
# the EGL display; freeing a context after that prints EGL errors. atexit runs hooks last-in,
# first-out and ours is registered after mujoco was imported, so it runs first.
_open_renderers: weakref.WeakSet[PixelRenderer] = weakref.WeakSet()


def _close_open_renderers() -> None:
    for renderer in list(_open_renderers):
        renderer.close()


@functools.cache
def _register_exit_hook() -> None:
    atexit.register(_close_open_renderers)


_FAST_SLICES, _FAST_STACKS = 12, 8
"""Tessellation of spheres and capsules in fast mode (MuJoCo's default: 28 × 16). At 64×64 px this
changes about 1% of pixels by more than 8 grey levels, and renders 1.7-3× faster on llvmpipe."""


class PixelRenderer:
    """Square RGB frames of a MuJoCo model from one camera, through one reused GL context.

    Same camera, square field of view and 4× multisampling as dm_control's
    ``physics.render(size, size, camera_id)`` (the original PlaNet's render), without its
    per-call context switching. ``exact=True`` reproduces that render pixel for pixel. The default
    fast mode turns shadows and floor reflections off and tessellates round shapes more coarsely:
    framing and bodies are unchanged; without shadows and reflections the floor and background
    differ (mean 0.75 grey levels on cartpole/cheetah, about 5 on walker/cup/finger, 25 on
    reacher, whose lit floor turns flat: benchmarks/bench_render_diff.py), and a frame is
    6-11× cheaper on a CPU rasteriser (llvmpipe), where shadow maps dominate.
    """

    def __init__(self, model: Any, size: int, camera: int | str, exact: bool = False) -> None:
        mujoco = import_mujoco()
        quality = model.vis.quality
        saved = quality.numslices, quality.numstacks
        if not exact:
            # The GL context bakes the tessellation in when it is made; restore the model after.
            quality.numslices = min(_FAST_SLICES, quality.numslices)
            quality.numstacks = min(_FAST_STACKS, quality.numstacks)
        try:
            with gl_errors("creating a MuJoCo OpenGL context"):
                self._renderer = mujoco.Renderer(model, size, size)
        finally:
            quality.numslices, quality.numstacks = saved
        _register_exit_hook()
        _open_renderers.add(self)
        self._camera = camera
        if not exact:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def render(self, data: Any) -> np.ndarray:
        """uint8 [size, size, 3] frame of ``data`` (a ``mujoco.MjData``)."""
        self._renderer.update_scene(data, camera=self._camera)
        return self._renderer.render()

    def close(self) -> None:
        self._renderer.close()
        _open_renderers.discard(self)
