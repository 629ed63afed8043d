"""Pseudonyms: what a runs folder calls a respondent.

A run works on the survey's real respondent ids in memory (so a pseudonymized run scores exactly
what the plain run scores) and passes every id it writes through :class:`Pseudonyms`: sample and
doc files, the shared split and persona space. With ``--pseudonymize`` an id becomes
``p-<salted hash>``, the salt made once per runs folder, so that the runs of one folder still pair
person by person while no file of the folder carries a survey id; without it names are the ids.
Files that list people are written in the order of their written names (the ids' order would
name them to anyone holding the survey). Pseudonyms remove ids, not identifiability: a person's
answers in a samples file can still be matched against the survey by whoever holds it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import SurveyError

SALT_FILE = "pseudonym-salt"


class Pseudonyms:
    """Respondent id -> written name (``p-<salted hash>``, or the id itself without a salt)."""

    def __init__(self, salt: str | None = None):
        self.salt = salt

    @classmethod
    def for_runs_folder(cls, shared: Path) -> "Pseudonyms":
        """The pseudonyms of one runs folder: the salt is made once (``shared/pseudonym-salt``,
        readable by its owner only) and read by every later run."""
        path = Path(shared) / SALT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # written whole beside it, then linked into place: no process reads a partial salt
            handle, temporary = tempfile.mkstemp(prefix=f".{SALT_FILE}.", dir=path.parent)
            try:
                with os.fdopen(handle, "w") as out:
                    out.write(secrets.token_hex(32))
                with contextlib.suppress(FileExistsError):  # another process linked its salt first: that one holds
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        salt = path.read_text().strip()
        if not re.fullmatch(r"[0-9a-f]{64}", salt):
            raise SurveyError(f"{path}: not a pseudonym salt (64 hexadecimal digits); restore it, or remove the folder's pseudonymized runs")
        return cls(salt)

    @property
    def hides_ids(self) -> bool:
        """Whether written names differ from the ids (and files must not keep the ids' order either)."""
        return self.salt is not None

    def name(self, respondent: str) -> str:
        """The name written for ``respondent``."""
        if self.salt is None:
            return respondent
        return "p-" + hashlib.sha256(f"{self.salt}:{respondent}".encode()).hexdigest()[:16]

    def names(self, respondents: Iterable[str]) -> list[str]:
        """The names written for ``respondents``, in their order."""
        return [self.name(r) for r in respondents]

    def doc_id(self, respondent: str, question: str) -> str:
        """The id written for the doc of ``respondent``'s answer to ``question`` (``name|question``)."""
        return f"{self.name(respondent)}|{question}"

    def reveal(self, names: Iterable[str], respondents: Iterable[str], source: Path) -> list[str]:
        """The survey ids behind written ``names``, looked up among the survey's ``respondents``
        (a name no respondent has means the file was written for other data or another salt)."""
        names = list(names)
        if self.salt is None:
            return names
        ids = {self.name(r): r for r in respondents}
        unknown = next((n for n in names if n not in ids), None)
        if unknown is not None:
            raise SurveyError(f"{source}: pseudonym {unknown!r} belongs to no respondent of this survey (another runs folder's salt?)")
        return [ids[n] for n in names]


NO_PSEUDONYMS = Pseudonyms()
