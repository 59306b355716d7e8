"""The error tree: every error class pickles (errors cross from the fetch child to its parent)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler import errors

ERROR_CLASSES = sorted(
    (
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseException)
        and cls.__module__ == errors.__name__
    ),
    key=lambda cls: cls.__name__,
)


def test_the_tree_is_found() -> None:
    """The introspection finds the classes, so the property below cannot pass on none."""
    names = {cls.__name__ for cls in ERROR_CLASSES}
    assert {"ReconcilerError", "ConfigError", "RpcUnreachableError", "LakeChainError"} <= names


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_every_error_survives_pickling(cls: type[BaseException], data: st.DataObject) -> None:
    """Unpickled, an error of each class in errors.py has the same type, message and args."""
    if cls.__init__ is BaseException.__init__:
        error = data.draw(st.builds(cls, st.text()))  # a message, as Exception takes it
    else:
        error = data.draw(st.builds(cls))  # the arguments its own __init__ declares
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes, made just above)
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert repr(copy.args) == repr(error.args)
