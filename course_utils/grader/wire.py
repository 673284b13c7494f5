"""The data-only boundary between the judge and a student's kernel: framing and values.

Both sides speak the same small language over one Unix socket:

* **frames**: an 8-byte length and a JSON header, then a count and that many
  binary buffers (array and tensor bytes), each with its length. Sizes are
  checked against a limit *before* anything is allocated.
* **values**: ``None``, ``bool``, ``int``, ``float``, ``str``; lists, tuples
  and dicts of values; NumPy arrays and scalars of numeric or boolean dtype;
  torch tensors (dtype, shape, ``requires_grad``, ``grad``); ``torch.dtype``,
  ``torch.device``, ``torch.Size`` and ``numpy.dtype``. Everything else crosses
  as a *reference* (``{"obj": n}``): an opaque number for an object that stays
  on the side that owns it.

What the judge decodes is always an exact base type built by the judge's own
NumPy and torch from bytes (no subclasses, no pickle, no code), so an answer
cannot carry behaviour into the judge: it can only be a value, right or wrong.
Malformed input of any kind raises :class:`WireError`.

:class:`Codec` holds the object tables of one side. The *owner* side (the
kernel's agent) gives every object it sends a number and keeps it alive; the
*peer* side (the judge) remembers, for each value it decoded, the number it
came with, so that a value read from the kernel and passed back is the
kernel's own object again (identity, autograd graphs and memory sharing
survive the round trip).
"""

from __future__ import annotations

import json
import math
import socket
import struct
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_FRAME",
    "Codec",
    "Ref",
    "WireError",
    "recv_frame",
    "send_frame",
]

MAX_FRAME = 512 * 1024 * 1024  # bytes in one frame, header and buffers together
MAX_DEPTH = 64  # nesting of lists, tuples and dicts
MAX_ITEMS = 1_000_000  # entries in one frame's containers, all together
_NUMPY_KINDS = "biufc"  # bool, int, uint, float, complex: no objects, strings or voids
_TORCH_DTYPES = (
    "float64", "float32", "float16", "bfloat16", "complex64", "complex128", "int64", "int32",
    "int16", "int8", "uint8", "bool",
)


class WireError(Exception):
    """A frame or value that is not what the protocol allows."""


# ---------------------------------------------------------------------------------------------
# Frames


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send_frame(sock: socket.socket, header: dict[str, Any], buffers: list[bytes] = ()) -> None:  # type: ignore[assignment]
    """Send one frame: a JSON header and binary buffers."""
    body = json.dumps(header, allow_nan=True, separators=(",", ":")).encode()
    parts = [struct.pack("!Q", len(body)), body, struct.pack("!I", len(buffers))]
    for buf in buffers:
        parts += [struct.pack("!Q", len(buf)), buf]
    sock.sendall(b"".join(parts[:3]))
    for part in parts[3:]:
        sock.sendall(part)


def recv_frame(sock: socket.socket, limit: int = MAX_FRAME) -> tuple[dict[str, Any], list[bytes]]:
    """Receive one frame; :class:`WireError` if it is malformed or larger than ``limit``."""
    (size,) = struct.unpack("!Q", _recv_exact(sock, 8))
    if size > limit:
        raise WireError(f"a message of {size} bytes is over the {limit}-byte limit")
    raw = _recv_exact(sock, size)
    (count,) = struct.unpack("!I", _recv_exact(sock, 4))
    if count > MAX_ITEMS:
        raise WireError(f"{count} buffers in one message")
    total, buffers = size, []
    for _ in range(count):
        (length,) = struct.unpack("!Q", _recv_exact(sock, 8))
        total += length
        if total > limit:
            raise WireError(f"a message of more than {limit} bytes")
        buffers.append(_recv_exact(sock, length))
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise WireError(f"the message is not valid JSON ({type(err).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("the message is not a JSON object")
    return header, buffers


# ---------------------------------------------------------------------------------------------
# Values


class Ref:
    """An object that stays on the other side: its number, type and a few facts about it."""

    __slots__ = ("number", "type_name", "mro", "callable", "text")

    def __init__(self, number: int, type_name: str, mro: tuple[str, ...], is_callable: bool,
                 text: str) -> None:
        self.number, self.type_name, self.mro = number, type_name, mro
        self.callable, self.text = is_callable, text

    def __repr__(self) -> str:
        return f"<{self.type_name} #{self.number}>"


def _type_path(cls: type) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"


_REF_KEYS = {"obj", "type", "mro", "callable", "text"}


def _tag(node: Any) -> tuple[str, Any]:
    if type(node) is not dict or not node:
        raise WireError(f"expected a tagged value, got {type(node).__name__}")
    if "obj" in node:
        if not set(node) <= _REF_KEYS:
            raise WireError(f"a reference has keys {sorted(node)}")
        return "obj", node["obj"]
    keys = [k for k in node if k not in ("id", "lid")]
    if len(keys) != 1:
        raise WireError(f"a tagged value has keys {sorted(node)}")
    return keys[0], node[keys[0]]


class Codec:
    """Encode and decode values for one side of a connection, keeping identities.

    Each side tags what it sends that can change in place (arrays, tensors, lists,
    dicts) with a number of its own: the kernel (``owner=True``) with ``id``, the
    judge with ``lid``. When a value comes back with a tag its receiver knows, the
    receiver's own object is updated in place and returned, so identities hold
    across the boundary (``sgd_step(params, grads)`` changes the judge's
    ``params``; a tensor read from the kernel and passed back *is* the kernel's
    tensor again, graph included). Objects that are not data cross as references
    (``{"obj": n}``): the kernel keeps them in :attr:`objects`; the judge turns
    them into whatever ``make_ref`` builds from a :class:`Ref`.

    ``make_local`` (judge) turns one of its objects that is not data into a
    tagged node (a callback, a handle going home); ``resolve_local`` (kernel)
    turns such a node back into an object.
    """

    def __init__(self, owner: bool, make_ref: Callable[[Ref], Any] | None = None,
                 make_local: Callable[[Any], dict[str, Any] | None] | None = None,
                 resolve_local: Callable[[str, Any], Any] | None = None) -> None:
        self.owner = owner
        self.mine = "id" if owner else "lid"  # the tag this side gives its own objects
        self.known: dict[tuple[str, int], Any] = {}  # (tag, number) -> object
        self.tags: dict[int, tuple[str, int, Any]] = {}  # id(object) -> (tag, number, object)
        self.refs: dict[int, Any] = {}  # judge: reference number -> what make_ref built
        self.make_ref = make_ref or (lambda ref: ref)
        self.make_local = make_local
        self.resolve_local = resolve_local
        self._next = 1

    # -- tables -----------------------------------------------------------------------------
    def _register(self, tag: str, number: int, obj: Any) -> None:
        self.known[(tag, number)] = obj
        self.tags[id(obj)] = (tag, number, obj)

    def tag_of(self, obj: Any) -> tuple[str, int] | None:
        found = self.tags.get(id(obj))
        return (found[0], found[1]) if found is not None and found[2] is obj else None

    def number(self, obj: Any) -> int:
        """This side's number for ``obj`` (a new one the first time)."""
        found = self.tag_of(obj)
        if found is not None and found[0] == self.mine:
            return found[1]
        number = self._next
        self._next += 1
        self._register(self.mine, number, obj)
        return number

    def lookup(self, number: Any) -> Any:
        """The kernel's object with reference number ``number``."""
        if type(number) is not int or ("id", number) not in self.known:
            raise WireError(f"no object #{number} on this side")
        return self.known[("id", number)]

    def forget(self) -> None:
        """Drop every table entry (the end of one test cell)."""
        self.known.clear()
        self.tags.clear()
        self.refs.clear()

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, value: Any, sync: bool = False) -> tuple[Any, list[bytes]]:
        """(node, buffers) for ``value``.

        ``sync`` (judge only): send the other side's objects with their data, so it
        updates them in place (the state of a callback's arguments after the call).
        """
        buffers: list[bytes] = []
        return self._enc(value, buffers, 0, sync), buffers

    def _enc(self, value: Any, buffers: list[bytes], depth: int, sync: bool) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"values nested deeper than {MAX_DEPTH} levels")
        kind = type(value)
        if value is None or kind in (bool, str):
            return value
        if kind is int:
            return value if abs(value) < 1 << 63 else {"bigint": str(value)}
        if kind is float:
            return value if math.isfinite(value) else {"float": repr(value)}
        tag = self.tag_of(value)
        if not self.owner and tag is not None and tag[0] == "id" and not sync:
            return {"obj": tag[1]}
        if kind is tuple:
            return {"tuple": [self._enc(v, buffers, depth + 1, sync) for v in value]}
        if kind is list:
            node: Any = {"list": [self._enc(v, buffers, depth + 1, sync) for v in value]}
            return self._tagged(node, value, tag)
        if kind is dict or (kind.__name__ == "OrderedDict" and kind.__module__ == "collections"):
            node = {"dict": [[self._enc(k, buffers, depth + 1, sync), self._enc(v, buffers, depth + 1, sync)]
                             for k, v in value.items()]}
            return self._tagged(node, value, tag)
        node = self._enc_special(value, buffers, depth)
        if node is not None:
            return self._tagged(node, value, tag) if ("nd" in node or "tensor" in node) else node
        if self.owner:
            return self._enc_ref(value)
        if self.make_local is not None:
            node = self.make_local(value)
            if node is not None:
                return node
        raise WireError(f"a {_type_path(kind)} cannot be sent to the kernel")

    def _tagged(self, node: dict[str, Any], value: Any, tag: tuple[str, int] | None) -> dict[str, Any]:
        if tag is None:
            tag = (self.mine, self.number(value))
        node[tag[0]] = tag[1]
        return node

    def _enc_ref(self, value: Any) -> dict[str, Any]:
        cls = type(value)
        try:
            text = object.__repr__(value)
        except Exception:  # noqa: BLE001
            text = "?"
        mro = [_type_path(c) for c in getattr(cls, "__mro__", (cls,))][:12]
        return {"obj": self.number(value), "type": _type_path(cls), "mro": mro,
                "callable": callable(value), "text": text[:80]}

    def _enc_special(self, value: Any, buffers: list[bytes], depth: int) -> Any:
        import sys

        np = sys.modules.get("numpy")
        torch = sys.modules.get("torch")
        if np is not None:
            if isinstance(value, np.ndarray) and value.dtype.kind in _NUMPY_KINDS:
                array = np.ascontiguousarray(np.asarray(value))
                buffers.append(array.tobytes())
                return {"nd": {"buf": len(buffers) - 1, "dtype": array.dtype.str, "shape": list(array.shape)}}
            if isinstance(value, np.generic) and np.dtype(type(value)).kind in _NUMPY_KINDS:
                scalar = np.asarray(value)
                buffers.append(scalar.tobytes())
                return {"npscalar": {"buf": len(buffers) - 1, "dtype": scalar.dtype.str}}
            if isinstance(value, np.dtype) and value.kind in _NUMPY_KINDS:
                return {"npdtype": value.str}
        if torch is not None:
            if isinstance(value, torch.Tensor):
                return {"tensor": self._enc_tensor(value, buffers)}
            if isinstance(value, torch.dtype):
                return {"dtype": str(value).removeprefix("torch.")}
            if isinstance(value, torch.device):
                return {"device": str(value)}
            if isinstance(value, torch.Size):
                return {"size": [int(v) for v in value]}
        return None

    def _enc_tensor(self, value: Any, buffers: list[bytes]) -> dict[str, Any]:
        import torch

        plain = value.detach()
        dtype = str(plain.dtype).removeprefix("torch.")
        if dtype not in _TORCH_DTYPES:
            raise WireError(f"tensors of dtype {dtype} are not supported")
        info: dict[str, Any] = {"dtype": dtype, "shape": list(plain.shape), "device": str(plain.device),
                                "requires_grad": bool(value.requires_grad), "leaf": bool(value.is_leaf)}
        if plain.device.type != "meta":
            data = plain.cpu().contiguous().reshape(-1)
            buffers.append(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
            info["buf"] = len(buffers) - 1
        if self.owner:
            info["param"] = isinstance(value, torch.nn.Parameter)
        grad = value.grad if value.is_leaf else None
        if grad is not None:
            info["grad"] = self._enc_tensor(grad, buffers)
        return info

    # -- decoding -----------------------------------------------------------------------------
    def decode(self, node: Any, buffers: list[bytes]) -> Any:
        """The value ``node`` stands for; :class:`WireError` if it is malformed."""
        try:
            return self._dec(node, buffers, 0, [0])
        except WireError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError,
                RuntimeError, AttributeError) as err:
            raise WireError(f"a malformed value ({type(err).__name__}: {err})"[:300]) from None

    def _dec(self, node: Any, buffers: list[bytes], depth: int, count: list[int]) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise WireError("a value nested too deep or with too many parts")
        kind = type(node)
        if node is None or kind in (bool, int, float, str):
            return node
        tag, body = _tag(node)
        if tag == "obj":
            return self._dec_obj(node)
        if tag == "tuple":
            return tuple(self._dec(v, buffers, depth + 1, count) for v in _list(body))
        if tag == "list":
            return self._identified(node, [self._dec(v, buffers, depth + 1, count) for v in _list(body)])
        if tag == "dict":
            out = {}
            for pair in _list(body):
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("a dict entry is not a pair")
                key = self._dec(pair[0], buffers, depth + 1, count)
                if not _hashable_plain(key):
                    raise WireError(f"a dict key of type {type(key).__name__}")
                out[key] = self._dec(pair[1], buffers, depth + 1, count)
            return self._identified(node, out)
        if tag == "nd":
            return self._identified(node, _decode_array(body, buffers))
        if tag == "tensor":
            return self._identified(node, _decode_tensor(body, buffers, 0))
        return self._dec_scalar(tag, body, buffers)

    def _dec_scalar(self, tag: str, body: Any, buffers: list[bytes]) -> Any:
        if tag == "bigint":
            return int(_text(body, 5000))
        if tag == "float":
            if body not in ("nan", "inf", "-inf"):
                raise WireError(f"float {body!r}")
            return float(body)
        if tag == "npscalar":
            import numpy as np

            if type(body) is not dict:
                raise WireError("a malformed NumPy scalar")
            dtype = _numpy_dtype(body.get("dtype"))
            return np.frombuffer(_buffer(body, buffers, dtype.itemsize), dtype=dtype)[0].copy()
        if tag == "npdtype":
            return _numpy_dtype(body)
        if tag == "dtype":
            import torch

            if body not in _TORCH_DTYPES:
                raise WireError(f"dtype {body!r}")
            return getattr(torch, body)
        if tag == "device":
            import torch

            return torch.device(_text(body, 40))
        if tag == "size":
            import torch

            if type(body) is not list or not all(type(v) is int for v in body):
                raise WireError("a torch.Size of non-integers")
            return torch.Size(body)
        if self.resolve_local is not None and tag in ("callback", "global"):
            return self.resolve_local(tag, body)
        raise WireError(f"unknown value tag {tag!r}")

    def _dec_obj(self, node: dict[str, Any]) -> Any:
        number = node["obj"]
        if type(number) is not int:
            raise WireError("a reference without a number")
        if self.owner:
            return self.lookup(number)
        if ("id", number) in self.known:
            return self.known[("id", number)]
        if number in self.refs:
            return self.refs[number]
        mro = node.get("mro", [])
        if type(mro) is not list or not all(type(m) is str for m in mro):
            raise WireError("a reference with a malformed type")
        ref = Ref(number, _text(node.get("type", "?"), 200), tuple(m[:200] for m in mro[:12]),
                  node.get("callable") is True, _text(node.get("text", ""), 80))
        made = self.make_ref(ref)
        self.refs[number] = made
        return made

    def _identified(self, node: dict[str, Any], value: Any) -> Any:
        """Register ``value`` under the node's tag, or update the object the tag names."""
        tags = [t for t in ("id", "lid") if t in node]
        if not tags:
            return value
        if len(tags) > 1:
            raise WireError("a value with two identities")
        tag, number = tags[0], node[tags[0]]
        if type(number) is not int:
            raise WireError("a value with a malformed identity")
        if tag == self.mine and (tag, number) not in self.known:
            raise WireError(f"a value claims to be object {tag}={number}, which this side never sent")
        old = self.known.get((tag, number))
        if old is None:
            self._register(tag, number, value)
            return value
        updated = update_in_place(old, value)
        if updated is not old:
            self._register(tag, number, updated)
        return updated


def update_in_place(old: Any, new: Any) -> Any:
    """Make ``old`` hold ``new``'s state where the types allow it; return the object to use.

    Arrays and tensors of the same shape and dtype are overwritten (a tensor also
    takes ``requires_grad`` and ``grad``), lists and dicts take the new items;
    anything else, or a changed shape, returns ``new``.
    """
    import sys

    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if type(old) is list and type(new) is list:
        old[:] = new
        return old
    if type(old) is dict and type(new) is dict:
        old.clear()
        old.update(new)
        return old
    if np is not None and isinstance(old, np.ndarray) and isinstance(new, np.ndarray):
        if old.shape == new.shape and old.dtype == new.dtype and old.flags.writeable:
            old[...] = new
            return old
        return new
    if torch is not None and isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
        if old.shape != new.shape or old.dtype != new.dtype or old.device != new.device:
            return new
        if old.device.type != "meta":
            with torch.no_grad():
                if not torch.equal(old, new):
                    old.copy_(new)
        if old.is_leaf:
            if old.requires_grad != new.requires_grad:
                old.requires_grad_(new.requires_grad)
            old.grad = new.grad if new.grad is None or new.grad.shape == old.shape else None
        return old
    return new


def _list(body: Any) -> list[Any]:
    if type(body) is not list:
        raise WireError("a container whose body is not a list")
    return body


def _hashable_plain(key: Any) -> bool:
    if key is None or type(key) in (bool, int, float, str):
        return True
    return type(key) is tuple and all(_hashable_plain(k) for k in key)


def _text(value: Any, limit: int) -> str:
    if type(value) is not str or len(value) > limit:
        raise WireError("a malformed string field")
    return value


def _numpy_dtype(text: Any) -> Any:
    import numpy as np

    dtype = np.dtype(_text(text, 8))
    if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f"NumPy dtype {text!r} is not allowed")
    return dtype


def _shape(value: Any) -> tuple[int, ...]:
    if type(value) is not list or len(value) > 32 or not all(type(v) is int and v >= 0 for v in value):
        raise WireError("a malformed shape")
    return tuple(value)


def _buffer(body: dict[str, Any], buffers: list[bytes], nbytes: int) -> bytes:
    index = body.get("buf")
    if type(index) is not int or not 0 <= index < len(buffers):
        raise WireError("a value points at a missing buffer")
    buf = buffers[index]
    if len(buf) != nbytes:
        raise WireError(f"a buffer of {len(buf)} bytes where {nbytes} were expected")
    return buf


def _decode_array(body: Any, buffers: list[bytes]) -> Any:
    import numpy as np

    if type(body) is not dict:
        raise WireError("a malformed array")
    dtype = _numpy_dtype(body.get("dtype"))
    shape = _shape(body.get("shape"))
    size = math.prod(shape)
    buf = _buffer(body, buffers, size * dtype.itemsize)
    return np.frombuffer(buf, dtype=dtype).reshape(shape).copy()


def _decode_tensor(body: Any, buffers: list[bytes], depth: int) -> Any:
    import torch

    if type(body) is not dict or depth > 1:
        raise WireError("a malformed tensor")
    dtype_name = body.get("dtype")
    if dtype_name not in _TORCH_DTYPES:
        raise WireError(f"tensor dtype {dtype_name!r}")
    dtype = getattr(torch, dtype_name)
    shape = _shape(body.get("shape"))
    device = torch.device(_text(body.get("device", "cpu"), 40))
    if device.type == "meta":
        tensor = torch.empty(shape, dtype=dtype, device="meta")
    else:
        size = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        raw = _buffer(body, buffers, size * itemsize)
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        tensor = flat.view(dtype).reshape(shape).clone()
        if device.type != "cpu":
            tensor = tensor.to(device) if _device_available(device) else tensor
    requires_grad = body.get("requires_grad") is True
    if requires_grad and not (tensor.is_floating_point() or tensor.is_complex()):
        raise WireError("requires_grad on a tensor that cannot have gradients")
    if body.get("leaf") is False:
        # A result of autograd in the kernel: a non-leaf here too, so is_leaf and grad_fn
        # checks see what the student's code produced (its graph itself stays there).
        if not requires_grad:
            raise WireError("a non-leaf tensor that does not require grad")
        return tensor.requires_grad_(True).clone()
    if body.get("param") is True:
        tensor = torch.nn.Parameter(tensor, requires_grad=requires_grad)
    elif requires_grad:
        tensor.requires_grad_(True)
    grad = body.get("grad")
    if grad is not None:
        grad_tensor = _decode_tensor(grad, buffers, depth + 1)
        if grad_tensor.shape != tensor.shape or grad_tensor.dtype != tensor.dtype:
            raise WireError("a gradient whose shape or dtype differs from its tensor")
        tensor.grad = grad_tensor
    return tensor


def _device_available(device: Any) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    return False
