"""How a training option is declared once and turned into a flag and a check.

A setting is one field of :class:`~kerasnets.training.config.TrainConfig` made with
:func:`option`: its type (the annotation), default, help, group, validation and
where it goes. From that field alone come the command-line flag (with its help and
its default), the check of values from the command line, ``config.json``
(``--resume``) or Python (one :func:`check`, used by all three), and, for options
marked ``to_preprocessing``, the field of :class:`kerasnets.data.Preprocessing`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Option:
    """What a setting needs besides its name, type and default."""

    help: str
    group: str
    choices: tuple | None = None
    limit: Callable[[Any], str | None] | None = None  # value -> what is wrong, or None
    metavar: str | None = None
    default_text: str | None = None  # how help shows a default of None ("the whole set")
    to_preprocessing: bool = False  # also a field of the run's data.Preprocessing
    host: bool = False  # may differ per host: --resume takes it from the command line
    flag: bool = True  # False: not a flag of its own (set by a recipe, or positional)


def option(default, help, group, *, default_factory=None, **details):
    """A ``TrainConfig`` field declared with everything about it (see :class:`Option`)."""
    metadata = {"option": Option(help=help, group=group, **details)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def positive(value):
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value):
    return None if value >= 0 else f"must be >= 0, got {value}"


def fraction(value):
    return None if 0 <= value < 1 else f"must be in [0, 1), got {value}"


def declared(config_class) -> list[tuple[dataclasses.Field, Option]]:
    """``(field, option)`` of every declared setting, in declaration order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(config_class)
            if "option" in f.metadata]


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def value_type(field: dataclasses.Field) -> tuple[type, bool]:
    """``(type, None allowed)`` from the field's annotation (``int | None``: int, True)."""
    annotation = field.type  # a type, not a string: config.py has no postponed annotations
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kinds[0], True
    return annotation, False


def problem(field: dataclasses.Field, value) -> str | None:
    """What is wrong with ``value`` for this setting, or ``None``: the one check that
    the command line, ``config.json`` and Python values all go through."""
    spec = field.metadata["option"]
    kind, optional = value_type(field)
    if value is None:
        return None if optional else "must be set"
    # bool is an int in Python; an int is a fine float (JSON writes 2.0 as 2 sometimes)
    accepted = (int, float) if kind is float else kind
    if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
        return f"must be a {kind.__name__}, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"invalid choice: {value!r} (choose from {', '.join(map(str, spec.choices))})"
    return spec.limit(value) if spec.limit else None


def check(field: dataclasses.Field, value) -> None:
    """Raise ``ValueError`` naming the flag when ``value`` is not valid for ``field``."""
    message = problem(field, value)
    if message:
        raise ValueError(f"{flag_name(field.name)}: {message}")


def _parse_text(field: dataclasses.Field) -> Callable[[str], Any]:
    """argparse ``type=``: the text as the field's type, then :func:`problem`."""
    kind, _ = value_type(field)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid {kind.__name__} value: {text!r}") from None
        message = problem(field, value)
        if message:
            raise argparse.ArgumentTypeError(message)
        return value
    parse.__name__ = kind.__name__
    return parse


def shown_default(field: dataclasses.Field) -> str:
    spec = field.metadata["option"]
    if field.default is None or field.default is dataclasses.MISSING:
        return spec.default_text or "none"
    if isinstance(field.default, bool):
        return "on" if field.default else "off"
    return str(field.default)


def help_text(field: dataclasses.Field) -> str:
    """The help, with the default only when there is one (a value, or a default_text)."""
    spec = field.metadata["option"]
    if (field.default is None or field.default is dataclasses.MISSING) and \
            not spec.default_text:
        return spec.help
    return f"{spec.help} (default: {shown_default(field)})"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``ArgumentDefaultsHelpFormatter`` that shows a default only when there is one:
    never "(default: None)" (nor for a flag that is off or an empty list)."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], argparse.SUPPRESS) or \
                "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_flags(parser: argparse.ArgumentParser, config_class, groups: dict | None = None):
    """One flag per declared setting, in argument groups named by ``Option.group``.
    Every flag's argparse default is ``None``, so that what the user set can be told
    from what the recipe or the declared default fills in; help shows the real one."""
    groups = {} if groups is None else groups
    for field, spec in declared(config_class):
        if not spec.flag:
            continue
        if spec.group not in groups:
            groups[spec.group] = parser.add_argument_group(spec.group)
        kind, _ = value_type(field)
        kwargs = dict(dest=field.name, default=None, help=help_text(field))
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _parse_text(field)
            kwargs["metavar"] = spec.metavar or (
                "{" + ",".join(map(str, spec.choices)) + "}" if spec.choices else None)
        groups[spec.group].add_argument(flag_name(field.name), **kwargs)
    return groups
