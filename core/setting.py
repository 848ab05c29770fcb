"""One declaration per setting: its variable, shape, default and help, on the dataclass field it fills.

    build_timeout: int = setting("TERESA_BUILD_TIMEOUT", integer, default=15 * 60, help="seconds a build may take")

`read()` builds a settings dataclass from the environment (a bad value is one ConfigError sentence, at
start-up); `declared()` lists the declarations in the order the README's configuration table shows them
(`server/docs.py` renders it, and a test keeps the README in step). A field that holds a group of settings
(`group()`), or a value made from one (`made_from()`), lists that group's settings in its place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

from core.envparse import Parse

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")
T = TypeVar("T")
SETTING = "teresa.setting"  # dataclass field metadata: the field's Setting
GROUP = "teresa.settings"   # ... or the dataclass whose settings the field is read from


@dataclass(frozen=True)
class Setting:
    env: str                       # the variable
    parse: Parse[Any]              # its shape (core/envparse.py)
    default: Any                   # the field's default: what an unset variable gives, unless derived
    help: str                      # the table's Meaning column ("" for a setting that joins the row above)
    shown: str | None = None       # the table's Default column in words, when `default` is not what users get
    joins: bool = False            # shown in the row above: a family of settings with one meaning
    as_given: bool = False         # the value is not stripped (passwords, keys, a PEM): only "" is unset

    def given(self, env: Mapping[str, str]) -> str:
        """The variable's value as the shape sees it; "" when unset."""
        value = env.get(self.env, "")
        return value if self.as_given else value.strip()


def setting(env: str, parse: Parse[T], *, default: T, help: str = "", shown: str | None = None, joins: bool = False,
            as_given: bool = False, repr: bool = True) -> T:
    """A dataclass field read from the variable `env`; `repr=False` for secrets."""
    declared = Setting(env, parse, default, help, shown, joins, as_given)
    value: T = field(default=default, repr=repr, metadata={SETTING: declared})
    return value


def group(cls: type[D]) -> D:
    """A field holding a dataclass of settings of its own (StorageSettings ...), read by its own function."""
    value: D = field(default_factory=cls, metadata={GROUP: cls})
    return value


def made_from(cls: type[Any], *, default: T, repr: bool = True) -> T:
    """A field computed from a dataclass of settings (the database URL from the TERESADB_* settings)."""
    value: T = field(default=default, repr=repr, metadata={GROUP: cls})
    return value


def read(cls: type[D], env: Mapping[str, str], /, *, derived: Mapping[str, Callable[[D], object]] | None = None,
         **values: object) -> D:
    """cls from the environment.

    A declared field takes its variable's parsed value when set; when unset, `derived[name]` applied to the
    settings read so far (a default that follows from other settings, in the order given), else its declared
    default. A field without a declaration (a group, the environment itself) takes `values[name]` or
    `derived[name]`, else its dataclass default.
    """
    derived = derived or {}
    kwargs = dict(values)
    defaulted = set(derived)  # the fields a derived default applies to: unset settings, undeclared fields
    for f in dataclasses.fields(cls):
        spec: Setting | None = f.metadata.get(SETTING)
        if spec is None:
            continue
        if f.name in values:
            raise TypeError(f"{cls.__name__}.{f.name} is read from {spec.env}; derive its default instead")
        if f.name in derived and spec.shown is None:
            raise TypeError(f"{spec.env}'s default is derived; say how the table shows it (shown=...)")
        if value := spec.given(env):
            kwargs[f.name] = spec.parse(spec.env, value, spec.default)
            defaulted.discard(f.name)
    settings = cls(**kwargs)
    for name, default in derived.items():
        if name in defaulted:
            settings = dataclasses.replace(settings, **{name: default(settings)})
    return settings


def declared(cls: type[Any]) -> Iterator[Setting]:
    """Every setting cls reads, its groups' in their places, in declaration order: the README table's rows."""
    for f in dataclasses.fields(cls):
        if SETTING in f.metadata:
            yield f.metadata[SETTING]
        elif GROUP in f.metadata:
            yield from declared(f.metadata[GROUP])


def to_env(settings: DataclassInstance, *names: str) -> dict[str, str]:
    """The variables that give these fields of `settings` their values again (in a child process or a pod)."""
    specs = {f.name: f.metadata[SETTING] for f in dataclasses.fields(settings) if SETTING in f.metadata}
    return {specs[name].env: str(getattr(settings, name)) for name in names}
