"""Skippers: functions that find where an XDR value ends without building it.

Ledger metadata is mostly what events do not need (transaction envelopes, results, ledger
entry changes), and XDR has no length prefixes to jump over a struct, so finding the events
means walking past everything before them. stellar-sdk can do that only by building every
object. A skipper reads just the discriminants and lengths that decide the layout.

The layouts are not written out here: they are read off stellar-sdk's own generated
`unpack` methods (one regular shape per XDR struct, union, enum, typedef and array), so a
skipper follows exactly the XDR version the installed stellar-sdk reads. Each type becomes
one small generated Python function; runs of fixed-size fields collapse into one addition.
"""

from __future__ import annotations

import ast
import enum
import inspect
import struct
import textwrap
from collections.abc import Callable
from typing import Any

from stellar_sdk import xdr

from stellar_reconciler.errors import XdrSkipError

# A skipper takes the whole buffer and the position where a value starts, and returns the
# position just past it; it raises XdrSkipError (or struct.error on a short buffer).
Skipper = Callable[[bytes, int], int]

_uint = struct.Struct(">I").unpack_from
_int = struct.Struct(">i").unpack_from
_BASE_SIZES = {"Integer": 4, "UnsignedInteger": 4, "Boolean": 4, "Float": 4}
_BASE_SIZES |= {"Hyper": 8, "UnsignedHyper": 8, "Double": 8}


class _Compiler:
    """Turns stellar-sdk's generated `unpack` methods into skipper source, type by type."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"U": _uint, "I": _int, "XdrSkipError": XdrSkipError}
        # Type name -> fixed byte size, or None once it has a generated function.
        self.sizes: dict[str, int | None] = {}

    def shape(self, name: str) -> int | None:
        """The fixed size of `name`, or None when it needs its function `s_<name>`."""
        if name in self.sizes:
            return self.sizes[name]
        if name in _BASE_SIZES:
            return _BASE_SIZES[name]
        cls = getattr(xdr, name)
        if isinstance(cls, type) and issubclass(cls, enum.Enum):
            self.sizes[name] = 4
            return 4
        # Provisionally variable, so a recursive type refers to its own function.
        self.sizes[name] = None
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls.unpack)))
        function = tree.body[0]
        assert isinstance(function, ast.FunctionDef)
        body = [s for s in function.body if not _is_depth_guard(s)]
        if body and _is_union(body):
            lines = self._union(name, body)
        else:
            parts = self._fields(body)
            if all(isinstance(part, int) for part in parts):
                size = sum(part for part in parts if isinstance(part, int))
                self.sizes[name] = size
                return size
            lines = [*self._sequence(parts), "return p"]
        source = f"def s_{name}(d, p):\n" + textwrap.indent("\n".join(lines), "    ")
        exec(compile(source, f"<skip {name}>", "exec"), self.namespace)  # noqa: S102 (code built above from stellar-sdk's own layout)
        return None

    def _fields(self, body: list[ast.stmt]) -> list[int | str]:
        """One part per statement: a fixed size, or a line of code that advances `p`."""
        parts: list[int | str] = []
        length: int | str | None = None
        for statement in body:
            if isinstance(statement, ast.Return | ast.ImportFrom | ast.Raise):
                continue
            if isinstance(statement, ast.If):
                # `_remaining` checks of arrays: our loops check the count themselves.
                continue
            if isinstance(statement, ast.Assign):
                value = statement.value
                target = statement.targets[0]
                target_name = target.id if isinstance(target, ast.Name) else ""
                if target_name == "_remaining":
                    continue
                if target_name == "length":
                    length = int(str(value.value)) if isinstance(value, ast.Constant) else "var"
                    continue
                if isinstance(value, ast.List):
                    continue
                if isinstance(value, ast.IfExp):
                    parts.append(self._optional(_unpacked_type(value.body)))
                    continue
                if isinstance(value, ast.Call):
                    parts.append(self._call(value))
                    continue
            if isinstance(statement, ast.For) and length is not None:
                call = statement.body[0]
                assert isinstance(call, ast.Expr)
                assert isinstance(call.value, ast.Call)
                element = call.value.args[0]
                assert isinstance(element, ast.Call)
                parts.append(self._array(element, length))
                length = None
                continue
            raise NotImplementedError(ast.dump(statement)[:200])
        return parts

    def _call(self, call: ast.Call) -> int | str:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            if owner == "unpacker":
                return 4  # unpack_int / unpack_uint of an enum's own unpack
            if owner in ("Opaque", "String"):
                limit = int(_constant(call.args[1]))
                fixed = owner == "Opaque" and _constant(call.args[2]) is True
                if fixed:
                    return (limit + 3) & ~3
                return (
                    f"n = U(d, p)[0]\nif n > {limit}: raise XdrSkipError('opaque too long')\n"
                    "p += 4 + ((n + 3) & ~3)"
                )
            size = self.shape(owner)
            if size is not None:
                return size
            return f"p = s_{owner}(d, p)"
        raise NotImplementedError(ast.dump(call)[:200])

    def _optional(self, name: str) -> str:
        size = self.shape(name)
        advance = f"p += {size}" if size is not None else f"p = s_{name}(d, p)"
        return f"flag = U(d, p)[0]\np += 4\nif flag:\n    {advance}"

    def _array(self, element: ast.Call, length: int | str) -> int | str:
        inner = self._call(element)
        if isinstance(length, int):
            if isinstance(inner, int):
                return inner * length
            return "\n".join([inner] * length)
        if isinstance(inner, int):
            return f"p += 4 + U(d, p)[0] * {inner}"
        body = textwrap.indent(inner, "    ")
        return (
            "c = U(d, p)[0]\np += 4\n"
            "if c > len(d) - p: raise XdrSkipError('array longer than the input')\n"
            f"for _ in range(c):\n{body}"
        )

    def _sequence(self, parts: list[int | str]) -> list[str]:
        lines: list[str] = []
        pending = 0
        for part in parts:
            if isinstance(part, int):
                pending += part
                continue
            if pending:
                lines.append(f"p += {pending}")
                pending = 0
            lines.append(part)
        if pending:
            lines.append(f"p += {pending}")
        return lines

    def _union(self, name: str, body: list[ast.stmt]) -> list[str]:
        head = body[0]
        assert isinstance(head, ast.Assign)
        assert isinstance(head.value, ast.Call)
        discriminant = _unpacked_type(head.value)
        enum_cls = getattr(xdr, discriminant, None)
        # Discriminants are signed: result codes are negative for failures.
        lines = ["k = I(d, p)[0]", "p += 4"]
        first = True
        for statement in body[1:]:
            if isinstance(statement, ast.Raise):
                continue
            assert isinstance(statement, ast.If), ast.dump(statement)[:200]
            value = _arm_value(statement.test, enum_cls)
            parts = self._fields(statement.body)
            arm = self._sequence(parts) or ["pass"]
            keyword = "if" if first else "elif"
            first = False
            lines.append(f"{keyword} k == {value}:")
            lines.extend("    " + line for line in "\n".join(arm).split("\n"))
        lines.append("else:")
        lines.append(f"    raise XdrSkipError('{name}: unknown arm %d' % k)")
        lines.append("return p")
        return lines


def _is_depth_guard(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.If)
        and isinstance(statement.test, ast.Compare)
        and isinstance(statement.test.left, ast.Name)
        and statement.test.left.id == "depth_limit"
    )


def _is_union(body: list[ast.stmt]) -> bool:
    return len(body) > 1 and all(isinstance(s, ast.If | ast.Raise) for s in body[1:])


def _unpacked_type(call: ast.expr) -> str:
    assert isinstance(call, ast.Call)
    assert isinstance(call.func, ast.Attribute)
    assert isinstance(call.func.value, ast.Name)
    return call.func.value.id


def _constant(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return getattr(xdr, node.id)
    raise NotImplementedError(ast.dump(node)[:200])


def _arm_value(test: ast.expr, enum_cls: Any) -> int:
    assert isinstance(test, ast.Compare)
    right = test.comparators[0]
    if isinstance(right, ast.Constant):
        return int(str(right.value))
    assert isinstance(right, ast.Attribute)
    assert enum_cls is not None
    return int(getattr(enum_cls, right.attr).value)


_COMPILER = _Compiler()


def skipper(name: str) -> Skipper:
    """The skipper of the stellar-sdk XDR type `name` (compiled on first use, then kept)."""
    size = _COMPILER.shape(name)
    if size is not None:
        fixed = size

        def skip_fixed(data: bytes, pos: int) -> int:
            return pos + fixed

        return skip_fixed
    function: Skipper = _COMPILER.namespace[f"s_{name}"]
    return function
