"""The oauthlib server class: only the grants XRouter enables are routed.

oauthlib's all-in-one ``Server`` wires the implicit, password and device
grants. Removing them means a request for one gets the protocol's own
answer, ``unsupported_response_type`` or ``unsupported_grant_type`` (RFC
6749 4.1.2.1, 5.2), before any client lookup, instead of relying on each
application's registered grant type.
"""

from __future__ import annotations

from typing import Any

from oauthlib.oauth2 import Server

DISABLED_RESPONSE_TYPES = ("token",)
DISABLED_GRANT_TYPES = ("password", "urn:ietf:params:oauth:grant-type:device_code")


class XRouterServer(Server):
    """``oauthlib.oauth2.Server`` without implicit, password and device grants."""

    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        for response_type in DISABLED_RESPONSE_TYPES:
            self._response_types.pop(response_type, None)
        for grant_type in DISABLED_GRANT_TYPES:
            self._grant_types.pop(grant_type, None)
