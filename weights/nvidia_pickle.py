"""Read NVIDIA stylegan2-ada-pytorch `.pkl` checkpoints without running their code.

Those pickles store each network as a "persistent object": a call to
`torch_utils.persistence._reconstruct_persistent_obj(meta)` whose `meta` holds the
module's Python source, its class name and its `__dict__` (init kwargs, parameters,
buffers, sub-modules).  The official loader `exec`s that source.  This module uses a
restricted unpickler instead: every global the pickle names must be on a short
allow-list of tensor-rebuild functions, and the persistent-object call is replaced
by one that returns a plain `PersistentRecord`.  Anything else (os.system, eval,
subprocess, an unknown class) stops the load before it is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from common.errors import CheckpointError


@dataclass
class PersistentRecord:
    """What an NVIDIA persistent object was, as inert data (its source is never run)."""

    class_name: str
    module_src: str
    state: Dict[str, Any] = field(default_factory=dict)

    def init_kwargs(self) -> Dict[str, Any]:
        kwargs = _plain(self.state.get("_init_kwargs") or {})
        if self.state.get("_init_args"):
            raise CheckpointError(f"{self.class_name} was built with positional arguments; cannot read them safely")
        return kwargs

    def state_dict(self, prefix: str = "") -> Dict[str, torch.Tensor]:
        """Flatten parameters and persistent buffers, recursing into sub-modules, with dotted names."""
        out: Dict[str, torch.Tensor] = {}
        non_persistent = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{prefix}{name} is not a tensor")
                out[prefix + name] = value.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise CheckpointError(f"sub-module {prefix}{name} is not a persistent record")
            out.update(child.state_dict(f"{prefix}{name}."))
        return out


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict` (a plain dict subclass; nothing else is needed)."""


def _plain(obj: Any) -> Any:
    """EasyDicts -> dicts, recursively, so kwargs are ordinary data."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _reconstruct_persistent_obj(meta: Dict[str, Any]) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError("unexpected persistent-object record in the pickle")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise CheckpointError("persistent object state is not a dict")
    return PersistentRecord(str(meta.get("class_name")), str(meta.get("module_src", "")), dict(state))


def _load_storage_bytes(data: bytes):
    """Tensor storages are nested legacy `torch.save` blobs: read them with weights_only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # protocol notes from the weights_only reader
            return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # a hostile or corrupt nested blob
        raise CheckpointError(f"refusing a tensor storage that is not plain data: {exc}") from None


def _rebuild_parameter(data, requires_grad, backward_hooks, *state):
    return data


def _multiarray():
    return (getattr(np, "_core", None) or np.core).multiarray  # numpy 2 renamed numpy.core


def _numpy_scalar() -> Callable:
    return _multiarray().scalar


def _numpy_array() -> Callable:
    """numpy's empty-array constructor; the pickle then fills in the data (object items are unpickled here too)."""
    return _multiarray()._reconstruct


_ALLOWED: Dict[Tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): lambda: _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): lambda: _load_storage_bytes,
    ("torch", "device"): lambda: torch.device,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): lambda: _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): lambda: EasyDict,
    ("dnnlib", "EasyDict"): lambda: EasyDict,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_array,  # numpy arrays in training state
    ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy", "ndarray"): lambda: np.ndarray,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; anything else is refused before it can run."""

    def __init__(
        self,
        file,
        allowed: Mapping[Tuple[str, str], Callable[[], Any]] = _ALLOWED,
        what: str = "tensor data or a StyleGAN network record",
    ) -> None:
        super().__init__(file)
        self._allowed, self._what = allowed, what

    def find_class(self, module: str, name: str):
        factory = self._allowed.get((module, name))
        if factory is None:
            raise CheckpointError(
                f"refusing to load: the pickle asks for {module}.{name}, which is not {self._what} (it could run code)"
            )
        return factory()

    def persistent_load(self, pid):
        raise CheckpointError("refusing to load: the pickle uses persistent ids (not an NVIDIA network pickle)")


def first_global(data: bytes) -> Optional[Tuple[str, str]]:
    """(module, name) of the first global a pickle names, read from its opcodes (nothing runs).

    TensorFlow pickles start with `dnnlib.tflib.network.Network`; PyTorch ones with a
    persistent-object or tensor function.  Only used to pick which allow-list applies.
    """
    strings: list = []
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                return module, name
            if op.name == "STACK_GLOBAL":
                return (strings[-2], strings[-1]) if len(strings) >= 2 else None
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
    except Exception:  # a corrupt pickle: the real load reports it
        return None
    return None


def load_network_pickle(data: bytes) -> Dict[str, Any]:
    """Unpickle an NVIDIA network pickle into plain data (dicts, tensors, PersistentRecords)."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"not a readable network pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise CheckpointError("not an NVIDIA network pickle: the top level is not a dict")
    return obj


def generator_record(data: bytes, key: str = "G_ema") -> PersistentRecord:
    """The generator record (`G_ema` by default) of an NVIDIA network pickle."""
    obj = load_network_pickle(data)
    rec = obj.get(key)
    if not isinstance(rec, PersistentRecord):
        have = ", ".join(sorted(str(k) for k in obj)) or "nothing"
        raise CheckpointError(f"the pickle has no {key} network (it has: {have})")
    return rec
