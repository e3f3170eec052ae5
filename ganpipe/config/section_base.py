"""What every config section shares: unknown keys refused, no NaN or infinity, renamed keys
read for one release with a warning, and the checks several sections use."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

# torch seeds generators with 64-bit integers, and sample i uses seed + i: leave headroom
MAX_SEED = 2**62


def options_for_selected(options: dict, selected: list[str], kind: str, choose: str) -> dict:
    """A name -> options mapping may only name components that are selected: options for a
    misspelt or unselected name would otherwise be silently ignored."""
    stray = [name for name in options if name not in selected]
    if stray:
        shown = ", ".join(selected) or "none"
        raise ValueError(
            f"options given for {', '.join(map(repr, stray))}, which is not among the selected "
            f"{kind} ({shown}), so check the spelling or add it to {choose}"
        )
    return options


class Section(BaseModel):
    # no NaN or infinity anywhere: every number here reaches torch or a loop bound
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    # old key -> new key: a renamed option keeps working for one release, with a warning
    # that names the new key (the section's own name is added by ``_renamed_keys``)
    RENAMED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if not cls.RENAMED or not isinstance(data, dict):
            return data
        section = SECTION_NAMES.get(cls.__name__, cls.__name__)
        data = dict(data)
        for old, new in cls.RENAMED.items():
            if old not in data:
                continue
            if new in data:
                raise ValueError(f"{section}.{old} is the old name of {section}.{new}: give "
                                 f"only {section}.{new}")  # fmt: skip
            warnings.warn(f"{section}.{old} is deprecated: it is now {section}.{new} (the "
                          "old name is read until the next release)", FutureWarning,
                          stacklevel=2)  # fmt: skip
            data[new] = data.pop(old)
        return data


# section class -> its key in the config ("RetrainConfig" -> "retrain"), for messages; filled
# in by ``sections`` once ``Config`` exists
SECTION_NAMES: dict[str, str] = {}
