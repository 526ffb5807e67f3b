"""The exception tree of consumer/errors.py is the whole story: every exception class the
package defines is in it (or is listed below as private, with the reason), and the
drawing in errors.py's docstring shows each of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import consumer
from consumer import errors
from consumer.errors import LoyaltyConsumerError

# Control-flow signals that never leave the module defining them, and why they are not
# failures of the package.
PRIVATE = {
    # ExactlyOnce's "abort the transaction and rewind", caught by its own commit.
    "consumer.checkpoint._AbortNeeded",
}


def defined_exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for module_info in pkgutil.walk_packages(consumer.__path__, "consumer."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def test_the_walk_finds_classes_outside_errors_py():
    # Guards the guard: the walk reaches the development package and the private signal.
    found = defined_exception_classes()
    assert "consumer.dev.local_broker.LocalBrokerError" in found
    assert set(found) >= PRIVATE


def test_every_exception_class_is_in_the_tree_or_private():
    outside = {
        name
        for name, cls in defined_exception_classes().items()
        if not issubclass(cls, LoyaltyConsumerError)
    }
    assert outside == PRIVATE


def test_private_signals_are_not_in_the_tree():
    found = defined_exception_classes()
    assert not any(issubclass(found[name], LoyaltyConsumerError) for name in PRIVATE)


def test_the_drawing_names_every_class_of_the_tree():
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__)) | {"LoyaltyConsumerError"}
    in_tree = {
        cls.__name__
        for cls in defined_exception_classes().values()
        if issubclass(cls, LoyaltyConsumerError)
    }
    assert in_tree == drawn


def test_the_drawing_shows_each_class_under_its_parent():
    # Each drawn name's parent is the nearest line above it drawn one level shallower.
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = [(-1, "LoyaltyConsumerError")]
    for line in errors.__doc__.splitlines():
        match = re.search(r"[├└]── (\w+)", line)
        if match is None:
            continue
        depth = match.start()
        while stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(1)] = stack[-1][1]
        stack.append((depth, match.group(1)))
    classes = {
        cls.__name__: cls
        for cls in defined_exception_classes().values()
        if issubclass(cls, LoyaltyConsumerError)
    }
    for name, parent in parents.items():
        assert classes[name].__bases__[0].__name__ == parent, name
