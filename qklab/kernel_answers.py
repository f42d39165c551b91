"""A learner's answers as the grader sees them: read from the kernel they were computed in.

`make check-exercise` (`qklab.grading`) runs the learner's cells in a Jupyter kernel and the
check cells in its own process, with check modules the learner's code never touched. The check
needs the learner's answers; this module brings them across, and only as data:

- a plain value (a number, a string, `None`, `...`, a tensor, a numpy array or scalar, a
  `torch.dtype`, and lists, tuples, dicts and sets of these) is copied into the grading process;
- a function (anything callable) becomes a `KernelFunction`: calling it sends the arguments to
  the kernel, calls the learner's function there, and returns the result (copied back the same
  way), or raises the learner's exception again, with the same type name and message. When the
  function changed an argument in place, the change is made to the caller's argument too, so a
  check can see it;
- a *watch* (a check's wrapper that observes how a function computes: the rules of
  `qklab.checks.rules`, a refusal to build the package's answer) is decorated with
  `watch_where_it_runs`: applied to a `KernelFunction`, it is applied in the kernel, around the
  learner's function, where the computation happens (in the grading process it would watch only
  the wait for the kernel's reply);
- anything else arrives as an `Opaque` stand-in that keeps only the name of its type, so that a
  check says "returned a Foo, expected a torch.Tensor" as it would in the notebook.

Values cross as bytes of a tagged tree of builtin types (`encode`), pickled, and unpickled in
the grading process by an unpickler that refuses every class and function (`loads`): nothing the
kernel sends can run code in the grading process, or be an object whose comparisons lie (a
tensor subclass arrives as a plain tensor of its bytes). The kernel side (`serve_fetch`,
`serve_call`) runs in the learner's kernel and can be changed by the learner's code: what it
sends is then the learner's answer, judged like any other.

Not here: which cells run, and the verdicts (`qklab.grading`); the checks (`qklab.checks`).
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import io
import itertools
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["KernelAnswers", "KernelFunction", "KernelUnreachable", "MisplacedWatch", "NoVerdict", "Opaque", "encode", "decode", "dumps", "loads",
           "serve_fetch", "serve_call", "watch_where_it_runs"]

_MAX_DEPTH = 64
_NUMPY_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex
_TENSOR_DTYPES = {str(t).removeprefix("torch."): t for t in (
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)}


class NoVerdict(BaseException):
    """The grader cannot judge this check; the message says why.

    A `BaseException`, so that a check's `except Exception` around the learner's function does
    not take it for an error of the learner's code: it ends the check, and the grader reports it.
    """


class KernelUnreachable(NoVerdict):
    """The kernel did not answer the grader (a cell changed how cells run, or the kernel died)."""


class MisplacedWatch(NoVerdict):
    """A check watched a `KernelFunction` in the grading process, where it sees nothing of the
    computation: the watch needs `watch_where_it_runs` (a defect of the check, not of the answer)."""


class Opaque:
    """Stands for an object of the learner's that is not plain data; it keeps its type's name only."""

    def __repr__(self) -> str:
        return (f"<a {type(self).__name__} from your notebook (the grader reads numbers, strings, tensors, "
                "numpy arrays, and lists, tuples, dicts and sets of them, and calls functions)>")


# --- plain data ---------------------------------------------------------------------------------------

def _tensor_node(t: torch.Tensor) -> tuple:
    if t.layout != torch.strided or str(t.dtype).removeprefix("torch.") not in _TENSOR_DTYPES:
        raise TypeError(f"a {t.layout} tensor of {t.dtype}")
    plain = t.detach().as_subclass(torch.Tensor).cpu().resolve_conj().resolve_neg().contiguous()
    data = plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b""
    return ("tensor", str(plain.dtype).removeprefix("torch."), tuple(plain.shape), data)


def _tensor_of(dtype_name: str, shape: tuple, data: bytes) -> torch.Tensor:
    dtype = _TENSOR_DTYPES.get(dtype_name)
    if dtype is None:
        raise ValueError(f"not a tensor dtype: {dtype_name!r}")
    shape = tuple(int(n) for n in shape)
    if not data:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape).clone()


def _array_of(dtype_str: str, shape: tuple, data: bytes) -> np.ndarray:
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _NUMPY_KINDS:
        raise ValueError(f"not a numeric numpy dtype: {dtype_str!r}")
    return np.frombuffer(data, dtype=dtype).reshape(tuple(int(n) for n in shape)).copy()


def encode(value: Any, *, function: Callable[[Any], tuple] | None = None, _depth: int = 0) -> tuple:
    """`value` as a tree of tagged tuples of builtin types (see the module docstring).

    `function(f)` gives the node of a callable (None: callables are `Opaque` too); an object that
    is not plain data becomes an opaque node naming its type.
    """
    if _depth > _MAX_DEPTH:
        return ("opaque", "deeply nested object")
    again = lambda v: encode(v, function=function, _depth=_depth + 1)  # noqa: E731
    if isinstance(value, torch.Tensor):
        try:
            return _tensor_node(value)
        except (TypeError, RuntimeError):
            return ("opaque", type(value).__name__)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMPY_KINDS:
            return ("opaque", f"numpy array of {value.dtype}")
        return ("ndarray", value.dtype.str, tuple(value.shape), np.ascontiguousarray(value).tobytes())
    if isinstance(value, np.generic):
        if value.dtype.kind not in _NUMPY_KINDS:
            return ("opaque", type(value).__name__)
        return ("numpy scalar", value.dtype.str, np.asarray(value).tobytes())
    if value is None:
        return ("none",)
    if value is Ellipsis:
        return ("ellipsis",)
    if isinstance(value, bool):
        return ("bool", bool(value))
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", float(value))
    if isinstance(value, complex):
        return ("complex", float(value.real), float(value.imag))
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, bytes):
        return ("bytes", bytes(value))
    if isinstance(value, torch.dtype):
        return ("torch dtype", str(value).removeprefix("torch."))
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = next(k for k in (list, tuple, frozenset, set) if isinstance(value, k)).__name__
        return (kind, tuple(again(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((again(k), again(v)) for k, v in value.items()))
    if callable(value) and function is not None:
        return function(value)
    return ("opaque", type(value).__name__)


def decode(node: Any, *, function: Callable[[tuple], Any]) -> Any:
    """The value of an `encode`d tree; `function(node)` makes the value of a function node.

    Raises ValueError on anything that is not a well-formed node.
    """
    if not isinstance(node, tuple) or not node or not isinstance(node[0], str):
        raise ValueError(f"not a value node: {type(node).__name__}")
    tag, *rest = node
    again = lambda n: decode(n, function=function)  # noqa: E731
    simple = {"none": lambda: None, "ellipsis": lambda: Ellipsis}
    if tag in simple and not rest:
        return simple[tag]()
    if tag in ("bool", "int", "float", "str", "bytes") and len(rest) == 1 and type(rest[0]).__name__ == tag:
        return rest[0]
    if tag == "complex" and len(rest) == 2:
        return complex(float(rest[0]), float(rest[1]))
    if tag == "tensor" and len(rest) == 3:
        return _tensor_of(*rest)
    if tag == "ndarray" and len(rest) == 3:
        return _array_of(*rest)
    if tag == "numpy scalar" and len(rest) == 2:
        return _array_of(rest[0], (), rest[1])[()]
    if tag == "torch dtype" and len(rest) == 1:
        dtype = getattr(torch, str(rest[0]), None)
        if isinstance(dtype, torch.dtype):
            return dtype
    if tag in ("list", "tuple", "set", "frozenset") and len(rest) == 1 and isinstance(rest[0], tuple):
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](again(n) for n in rest[0])
    if tag == "dict" and len(rest) == 1 and isinstance(rest[0], tuple):
        return {again(k): again(v) for k, v in rest[0]}
    if tag == "opaque" and len(rest) == 1 and isinstance(rest[0], str):
        name = rest[0] if rest[0].isidentifier() else "object"
        return type(name, (Opaque,), {"__module__": "your notebook"})()
    if tag in ("function", "function ref"):
        return function(node)
    raise ValueError(f"not a value node: {tag!r}")


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles builtin containers, strings, bytes and numbers only: every class is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def dumps(node: tuple) -> bytes:
    return pickle.dumps(node, protocol=4)


def loads(data: bytes) -> Any:
    """Unpickle `data`, refusing anything but builtin containers, strings, bytes and numbers."""
    return _PlainUnpickler(io.BytesIO(data)).load()


# --- the kernel's side (runs in the learner's kernel) -------------------------------------------------

_FUNCTIONS: dict[int, Callable[..., Any]] = {}
_NEXT = itertools.count(1)


def _parameters(fn: Callable[..., Any]) -> tuple | None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return tuple((p.name, int(p.kind), p.default is not p.empty) for p in signature.parameters.values())


def _register(fn: Callable[..., Any]) -> tuple:
    ref = next(_NEXT)
    _FUNCTIONS[ref] = fn
    return ("function", ref, str(getattr(fn, "__name__", type(fn).__name__)),
            str(getattr(fn, "__qualname__", type(fn).__qualname__)), getattr(fn, "__doc__", None) or "", _parameters(fn))


def _registered(node: tuple) -> Callable[..., Any]:
    if node[0] != "function ref" or len(node) != 2 or node[1] not in _FUNCTIONS:
        raise ValueError(f"no function {node[1:]!r} in this kernel")
    return _FUNCTIONS[node[1]]


def _reply(path: str, node: tuple) -> None:
    Path(path).write_bytes(dumps(node))


def serve_fetch(namespace: dict[str, Any], name: str, reply: str) -> None:
    """Write the value of `name` in `namespace` (the notebook's globals) to the file `reply`."""
    if name not in namespace:
        _reply(reply, ("absent",))
        return
    _reply(reply, ("value", encode(namespace[name], function=_register)))


def _exception_node(err: BaseException) -> tuple:
    bases = tuple(k.__name__ for k in type(err).__mro__ if getattr(builtins, k.__name__, None) is k)
    frames = traceback.extract_tb(err.__traceback__)[1:]  # not this module's frame
    where = "".join(traceback.format_list(frames))
    args = encode(err.args)
    return ("raised", type(err).__name__, bases, str(err), args, where)


def serve_call(request: str, reply: str) -> None:
    """Call a registered function on the arguments in the file `request`; write the outcome to `reply`.

    The outcome: ("returned", result, arguments after the call or None if unchanged, keyword
    arguments likewise), or ("raised", ...) with the exception's type, builtin bases, message,
    arguments and the learner's frames.
    """
    try:
        ref, args_node, kwargs_node, watches = loads(Path(request).read_bytes())
        fn = _FUNCTIONS[ref]
        args = decode(args_node, function=_registered)
        kwargs = decode(kwargs_node, function=_registered)
        for module, qualname, options in watches:  # innermost first, as the check applied them
            watch: Any = importlib.import_module(module)
            for part in qualname.split("."):
                watch = getattr(watch, part)
            fn = watch(fn, **decode(options, function=_registered))
    except Exception as err:  # noqa: BLE001 - said to the grader, which reports it
        _reply(reply, ("unreadable", f"the kernel could not read the grader's request: {err}"))
        return
    try:
        result = fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - the learner's exception goes back to the check
        _reply(reply, _exception_node(err))
        return
    args_after, kwargs_after = encode(tuple(args)), encode(kwargs)
    _reply(reply, ("returned", encode(result, function=_register),
                   None if args_after == args_node else args_after,
                   None if kwargs_after == kwargs_node else kwargs_after))


# --- the grader's side ----------------------------------------------------------------------------------

def _kernel_code(call: str) -> str:
    """One statement that calls this module's kernel side, binding no name in the notebook."""
    return f'__import__("qklab.kernel_answers").kernel_answers.{call}'


class KernelAnswers:
    """The learner's names in a running kernel, read from the grading process.

    `run_code(code)` runs Python code in the kernel (the grader's kernel client); `workdir` is a
    folder both processes can read and write.
    """

    def __init__(self, run_code: Callable[[str], None], workdir: Path) -> None:
        self._run_code = run_code
        self._workdir = Path(workdir)
        self._count = itertools.count(1)

    def _exchange(self, code_of: Callable[[str, str], str], request: bytes | None, what: str) -> Any:
        n = next(self._count)
        ask, answer = self._workdir / f"{n}.request", self._workdir / f"{n}.reply"
        if request is not None:
            ask.write_bytes(request)
        try:
            self._run_code(_kernel_code(code_of(str(ask), str(answer))))
        except Exception as err:  # noqa: BLE001 - a timeout or a dead kernel: said in the report
            raise KernelUnreachable(f"the kernel did not answer when the grader {what} ({type(err).__name__}: {err})") from None
        try:
            return loads(answer.read_bytes())
        except FileNotFoundError:
            raise KernelUnreachable(
                f"the kernel did not answer when the grader {what}: a cell of yours may have changed how "
                "cells run (an input transformer, a replaced run_cell), or stopped the kernel") from None
        except Exception as err:  # noqa: BLE001 - not plain data: refused
            raise KernelUnreachable(f"the kernel's answer when the grader {what} is not plain data ({err})") from None
        finally:
            ask.unlink(missing_ok=True)
            answer.unlink(missing_ok=True)

    def _decode(self, node: Any, what: str) -> Any:
        try:
            return decode(node, function=self._function)
        except (ValueError, TypeError, IndexError) as err:
            raise KernelUnreachable(f"the kernel's answer when the grader {what} is not a value: {err}") from None

    def _function(self, node: tuple) -> KernelFunction:
        if node[0] != "function" or len(node) != 6:
            raise ValueError("a malformed function node")
        _, ref, name, qualname, doc, parameters = node
        return KernelFunction(self, ref, str(name), str(qualname), str(doc), parameters)

    def fetch(self, name: str) -> Any:
        """The value of the notebook's global `name` (a function becomes a `KernelFunction`);
        NameError when the notebook has no such name."""
        what = f"read `{name}`"
        reply = self._exchange(lambda ask, answer: f"serve_fetch(globals(), {name!r}, {answer!r})", None, what)
        if reply == ("absent",):
            raise NameError(f"name {name!r} is not defined")
        if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "value"):
            raise KernelUnreachable(f"the kernel's answer when the grader {what} is malformed")
        return self._decode(reply[1], what)

    def call(self, fn: KernelFunction, args: tuple, kwargs: dict[str, Any]) -> Any:
        """`fn(*args, **kwargs)` in the kernel (see `KernelFunction`)."""
        what = f"called `{fn.__name__}`"
        if torch._C._len_torch_function_stack() or torch._C._len_torch_dispatch_stack():
            raise MisplacedWatch(
                f"the check watches `{fn.__name__}` with a torch mode in the grading process, but the function runs "
                "in the kernel, so the watch would see nothing: the check's watch needs "
                "qklab.kernel_answers.watch_where_it_runs (a defect of the course; please report it)")

        def node(value: Any) -> tuple:
            if isinstance(value, KernelFunction) and value._answers is self:
                return ("function ref", value._ref)
            raise TypeError(f"the grader cannot send {value!r} to the kernel")

        args_node, kwargs_node = encode(tuple(args), function=node), encode(dict(kwargs), function=node)
        request = dumps((fn._ref, args_node, kwargs_node, fn._watches))
        reply = self._exchange(lambda ask, answer: f"serve_call({ask!r}, {answer!r})", request, what)
        if not isinstance(reply, tuple) or not reply or reply[0] not in ("returned", "raised", "unreadable"):
            raise KernelUnreachable(f"the kernel's answer when the grader {what} is malformed")
        if reply[0] == "unreadable" and len(reply) == 2:
            raise KernelUnreachable(str(reply[1]))
        if reply[0] == "raised" and len(reply) == 6:
            raise self._exception(*reply[1:], what=what)
        if reply[0] != "returned" or len(reply) != 4:
            raise KernelUnreachable(f"the kernel's answer when the grader {what} is malformed")
        result = self._decode(reply[1], what)
        if reply[2] is not None:
            _write_back(args, self._decode(reply[2], what))
        if reply[3] is not None:
            _write_back(kwargs, self._decode(reply[3], what))
        return result

    def _exception(self, name: Any, bases: Any, message: Any, args: Any, where: Any, *, what: str) -> BaseException:
        """The learner's exception, rebuilt: a builtin type as itself, any other type as a subclass
        of its nearest builtin base with the same name, and the same message."""
        from qklab.checks.feedback import ExerciseCheckError

        name, message = str(name), str(message)
        if name == "ExerciseCheckError":  # a watch of the check's (`watch_where_it_runs`) said no
            return ExerciseCheckError(message)
        base = next((getattr(builtins, b) for b in (bases if isinstance(bases, tuple) else ())
                     if isinstance(b, str) and isinstance(getattr(builtins, b, None), type)
                     and issubclass(getattr(builtins, b), Exception)), Exception)
        try:
            values = self._decode(args, what)
        except KernelUnreachable:
            values = (message,)
        if base.__name__ == name:
            try:
                err = base(*values) if isinstance(values, tuple) else base(message)
                if str(err) == message:
                    return err
            except Exception:  # noqa: BLE001, S110 - a builtin that wants other arguments: the message will do
                pass
        for parent in (base, Exception):  # a base whose constructor wants other arguments: Exception
            kind = type(name if name.isidentifier() else base.__name__, (parent,),
                        {"__module__": "your notebook", "__str__": lambda self: message})
            try:
                err = kind(message)
                break
            except Exception:  # noqa: BLE001, S112 - try the next base
                continue
        if where:
            err.add_note(f"Where it was raised in your notebook:\n{where}")
        return err


def _write_back(before: Any, after: Any) -> None:
    """Make the grader's `before` equal to the kernel's `after`, in place where `before` is mutable:
    what a function did to its arguments in the kernel is done to the caller's arguments."""
    if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
        with torch.no_grad():
            if before.shape == after.shape and before.dtype == after.dtype:
                before.copy_(after)
            else:
                before.set_(after.clone())
    elif isinstance(before, np.ndarray) and isinstance(after, np.ndarray) and before.flags.writeable:
        if before.shape == after.shape and before.dtype == after.dtype:
            before[...] = after
    elif isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
        if len(before) == len(after):
            for i, (b, a) in enumerate(zip(before, after)):
                if isinstance(b, (torch.Tensor, np.ndarray, list, tuple, dict)):
                    _write_back(b, a)
                elif isinstance(before, list):
                    before[i] = a
        elif isinstance(before, list):
            before[:] = after
    elif isinstance(before, dict) and isinstance(after, dict):
        for key in list(before):
            if key not in after:
                del before[key]
        for key, a in after.items():
            b = before.get(key)
            if key in before and isinstance(b, (torch.Tensor, np.ndarray, list, tuple, dict)):
                _write_back(b, a)
            else:
                before[key] = a


class KernelFunction:
    """A learner's function that lives in the kernel; calling it calls it there (`KernelAnswers.call`).

    It has the function's `__name__`, `__qualname__`, `__doc__` and `__signature__` (parameter
    names and kinds; defaults are shown as `...`, their values stay in the kernel).
    """

    def __init__(self, answers: KernelAnswers, ref: int, name: str, qualname: str, doc: str,
                 parameters: tuple | None, watches: tuple = ()) -> None:
        self._answers, self._ref, self._watches = answers, ref, watches
        self.__name__, self.__qualname__, self.__doc__ = name, qualname, doc or None
        self._parameters = parameters
        if parameters is not None:
            try:
                self.__signature__ = inspect.Signature([
                    inspect.Parameter(str(p), inspect._ParameterKind(int(kind)),
                                      default=Ellipsis if has_default else inspect.Parameter.empty)
                    for p, kind, has_default in parameters])
            except (ValueError, TypeError):
                pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._answers.call(self, args, kwargs)

    def watched_by(self, watch: Callable[..., Any], options: dict[str, Any]) -> KernelFunction:
        """This function with `watch(fn, **options)` applied in the kernel around each call
        (see `watch_where_it_runs`); `options` must be plain data."""
        node = (watch.__module__, watch.__qualname__, encode(options))
        if any(n[0] == "opaque" for n in _walk(node[2])):
            raise TypeError(f"the options of {watch.__qualname__} must be plain data to reach the kernel: {options!r}")
        return KernelFunction(self._answers, self._ref, self.__name__, self.__qualname__, self.__doc__ or "",
                              self._parameters, (*self._watches, node))

    def __repr__(self) -> str:
        return f"<your function {self.__qualname__}, run in the notebook's kernel>"


def _walk(node: tuple) -> list[tuple]:
    """Every node of an encoded tree."""
    found, todo = [], [node]
    while todo:
        here = todo.pop()
        found.append(here)
        if here[0] in ("list", "tuple", "set", "frozenset"):
            todo.extend(here[1])
        elif here[0] == "dict":
            todo.extend(n for pair in here[1] for n in pair)
    return found


def watch_where_it_runs(watch: Callable[..., Callable[..., Any]]) -> Callable[..., Callable[..., Any]]:
    """Decorate a watch, `watch(fn, **options) -> fn watched`, so that it watches where `fn` runs.

    A watch observes how a function computes while it runs (a `TorchFunctionMode`, a profile
    hook, a patched class): in the grading process, around a `KernelFunction`, it would see
    nothing but the wait for the kernel. Decorated, it returns, for a `KernelFunction`, one whose
    calls apply `watch` in the kernel, around the learner's function; for any other function it
    applies as before. The watch must be importable as `module.qualname` and its options plain
    data. A watch in the kernel can be fooled by the learner's code there (see `qklab.grading`).
    """

    @functools.wraps(watch)
    def applied(fn: Callable[..., Any], /, **options: Any) -> Callable[..., Any]:
        if isinstance(fn, KernelFunction):
            return fn.watched_by(watch, options)
        return watch(fn, **options)

    return applied
