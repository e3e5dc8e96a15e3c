"""Database layer: pool + transactions, the sqlstate map, the embedded server, the schema."""

from hustlexp.db.errors import translate
from hustlexp.db.pool import Database, set_local

__all__ = ["Database", "set_local", "translate"]
