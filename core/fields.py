"""Field types shared by the adapters' settings models (pydantic).

A setting filled from an environment variable that may be unset
(``${SLACK_APP_TOKEN:-}``) arrives as ``""`` or blanks: these types read that as
"not set" (None), before any other check of the field runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, SecretStr


def blank_is_unset(value: object) -> object:
    """None for a blank string (``""``, spaces), ``value`` itself otherwise."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


#: A secret that may be left out or blank (None then).
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(blank_is_unset)]
#: A text that may be left out or blank (None then).
OptionalText = Annotated[str | None, BeforeValidator(blank_is_unset)]
