"""fleetwave.store: the campaign state store (SQLModel tables, data functions, migrations).

Use it as ``from fleetwave import store`` then ``store.get_engine()``,
``store.session_scope(engine)`` and the keyword-only data functions of ``store.api``
(all re-exported here). See ``models.TRANSITIONS`` for every allowed status change.
"""

from fleetwave.store.api import *  # noqa: F403
from fleetwave.store.api import __all__ as _api_all
from fleetwave.store.consent import *  # noqa: F403
from fleetwave.store.consent import __all__ as _consent_all
from fleetwave.store.db import *  # noqa: F403
from fleetwave.store.db import __all__ as _db_all
from fleetwave.store.errors import *  # noqa: F403
from fleetwave.store.errors import __all__ as _errors_all
from fleetwave.store.models import *  # noqa: F403
from fleetwave.store.models import TRANSITIONS, UNSENT, allowed_sources, result_sources
from fleetwave.store.models import __all__ as _models_all

__all__ = [
    *_api_all,
    *_consent_all,
    *_db_all,
    *_errors_all,
    *_models_all,
    "TRANSITIONS",
    "UNSENT",
    "allowed_sources",
    "result_sources",
]
