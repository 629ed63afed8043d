"""Pseudonyms: what a runs folder calls a respondent.

A run works on the survey's real respondent ids in memory (so a pseudonymized run scores exactly
what the plain run scores) and passes every id it writes through :class:`Pseudonyms`: sample and
doc files, the shared split and persona space. With ``--pseudonymize`` an id becomes
``p-<salted hash>``, the salt made once per runs folder, so that the runs of one folder still pair
person by person while no file of the folder carries a survey id; without it names are the ids.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from .errors import SurveyError

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
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(handle, "w") as out:
                out.write(secrets.token_hex(32))
        except FileExistsError:
            pass
        return cls(path.read_text().strip())

    @property
    def hides_ids(self) -> bool:
        return self.salt is not None

    def name(self, respondent: str) -> str:
        """The name written for ``respondent``."""
        if self.salt is None:
            return respondent
        return "p-" + hashlib.sha256(f"{self.salt}:{respondent}".encode()).hexdigest()[:16]

    def names(self, respondents: Iterable[str]) -> list[str]:
        return [self.name(r) for r in respondents]

    def doc_id(self, doc_id: str) -> str:
        """A doc id (``respondent|question``) as written."""
        respondent, _, question = doc_id.partition("|")
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
