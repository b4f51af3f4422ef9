from typing import Any

from markupsafe import Markup

def escape(value: Any, /) -> Markup: ...
