"""The one secret type: a value that never shows, pickles or serialises itself.

Every secret the tool holds at runtime (an OAuth client secret, an access key
secret, an access token, a Slack bot token or webhook URL, a proxy password) is
a :class:`Secret`. Configuration never holds one: it *names* the environment
variable (``client_secret_env``) and the value is resolved at use time.

No dependencies, so the engine and the light ``diagnose`` path may use it.
"""

from __future__ import annotations

import hmac
from typing import Any


class Secret:
    """A secret value that never shows itself in ``repr``/``str``/f-strings and
    refuses to be pickled (a Prefect result, a process pool or a cache would
    otherwise write it somewhere).

    :meth:`reveal` is the one way out; call it only where the value goes on the wire.
    """

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str = "secret") -> None:
        if not isinstance(value, str):
            raise TypeError(f"{name}: a secret must be a string")
        self._value = value
        self.name = name

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name}=***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not picklable: pass the variable's name, not the value")

    def __copy__(self) -> "Secret":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "Secret":
        return self
