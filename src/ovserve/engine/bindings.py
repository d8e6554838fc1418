"""First use of OpenVINO's numpy conversions, done once on one thread before any parallel work.

Why: two threads that make their *first* numpy <-> OpenVINO conversion at the same time can
deadlock the process for good (seen as a server that never became ready, 2 starts in 40, with
20 models loading in parallel). OpenVINO's Python binding keeps its element-type -> numpy dtype
table in a C++ function-local ``static`` (``Common::ov_type_to_dtype``, used by
``Type.to_dtype()`` and ``Tensor.data``). Building that table creates ``py::dtype`` objects,
which first initialises pybind11's numpy API through ``gil_safe_call_once_and_store``; that
call *releases the GIL* and waits on a ``std::call_once``. So:

* thread A holds the C++ static's initialisation guard (``__cxa_guard_acquire``), releases
  the GIL inside pybind11's one-time numpy initialisation and then wants the GIL back;
* thread B, holding the GIL, reaches the same static and blocks on its guard, forever
  keeping the GIL A needs.

Two locks taken in opposite orders (the GIL, and a hidden C++ static-init mutex): the
classic deadlock (pybind11 PR #4877 explains the pattern). Once the table exists nothing
waits any more, so doing every first conversion here, under a Python lock (waiting on it
releases the GIL), removes the hazard for the life of the process: loads, probes, reloads
and inference threads only ever find the statics built. ``OpenVINOEngine()`` calls this
before it loads anything.
"""

from __future__ import annotations

import threading

import numpy as np
import openvino as ov

_lock = threading.Lock()
_prepared = threading.Event()

_ELEMENT_TYPES = (
    ov.Type.boolean,
    ov.Type.u8,
    ov.Type.u16,
    ov.Type.u32,
    ov.Type.u64,
    ov.Type.i8,
    ov.Type.i16,
    ov.Type.i32,
    ov.Type.i64,
    ov.Type.f16,
    ov.Type.f32,
    ov.Type.f64,
)


def prepare_bindings() -> None:
    """Make the binding's one-time conversions now, serialised; later calls return at once."""
    if _prepared.is_set():
        return
    with _lock:
        if _prepared.is_set():
            return
        for element in _ELEMENT_TYPES:
            array = np.zeros((1, 2), dtype=element.to_dtype())
            tensor = ov.Tensor(array)
            _ = tensor.data
            _ = ov.Tensor(array, shared_memory=True).data
        text = ov.Tensor(np.array([b"a", b"bc"], dtype=np.bytes_))
        _ = text.bytes_data
        _prepared.set()
