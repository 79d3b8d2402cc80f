"""The oauthlib request validator: DOT's, plus XRouter's hardening.

Beyond django-oauth-toolkit's defaults (all RFC 9700 gates on, see
``OAUTH2_PROVIDER`` in settings):

* the token endpoint checks the PKCE verifier itself: syntax (RFC 7636
  4.1), S256 only, and a verifier sent for a code issued without a
  challenge is a downgrade (RFC 9700 4.8); a failed check burns the code;
* a missing verifier is ``invalid_grant`` (oauthlib says ``invalid_request``);
* a redeemed code leaves a tombstone, and a replay revokes the tokens it
  issued (RFC 6749 10.5), which DOT does not do by itself.
"""

from __future__ import annotations

import hashlib
from typing import Any

from oauth2_provider.models import get_access_token_model, get_grant_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from accounts.oauth import pkce as oauth_pkce
from accounts.oauth import services as oauth_services

Grant = get_grant_model()
AccessToken = get_access_token_model()


class XRouterOAuth2Validator(OAuth2Validator):
    """DOT's validator with PKCE strictness and code-replay revocation."""

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        """Return True if ``code`` is live for ``client`` and the verifier fits."""
        grant = Grant.objects.filter(code=code, application=client).first()
        if grant is None:
            # Unknown, already redeemed, or issued to another client. Only a
            # redeemed code of this very client revokes anything: a foreign
            # client must not be able to kill another client's tokens.
            oauth_services.oauth_code_reuse_revoke(code=code, application=client)
            return False
        verifier = getattr(request, "code_verifier", None)
        if not grant.code_challenge:
            if verifier is not None:
                # PKCE downgrade (RFC 9700 4.8): no challenge, yet a verifier.
                Grant.objects.filter(pk=grant.pk).delete()
                return False
        elif grant.code_challenge_method != oauth_pkce.S256 or not oauth_pkce.s256_matches(
            verifier, grant.code_challenge
        ):
            # One attempt per code: a wrong, missing or malformed verifier burns
            # it, so an intercepted code cannot be tried against guesses.
            Grant.objects.filter(pk=grant.pk).delete()
            return False
        return bool(super().validate_code(client_id, code, client, request, *args, **kwargs))

    def _save_bearer_token(
        self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Save the tokens; remember what a code redemption issued."""
        super()._save_bearer_token(token, request, *args, **kwargs)
        if request.grant_type != "authorization_code":
            return
        checksum = hashlib.sha256(token["access_token"].encode("utf-8")).hexdigest()
        access = (
            AccessToken.objects.filter(token_checksum=checksum)
            .select_related("refresh_token")
            .first()
        )
        family = None
        if access is not None:
            refresh = getattr(access, "refresh_token", None)
            family = str(refresh.token_family) if refresh and refresh.token_family else None
        request.xr_issued = (access.pk if access else None, family)

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Consume ``code``; on a lost race revoke everything it issued."""
        access_token_id, family = getattr(request, "xr_issued", (None, None))
        if oauth_services.oauth_code_mark_redeemed(
            code=code,
            application=request.client,
            access_token_id=access_token_id,
            token_family=family,
        ):
            return
        # Two redemptions passed validation at once and this one lost: drop
        # its own tokens, and treat the winner's as a replay victim too.
        oauth_services.oauth_issued_revoke(access_token_id=access_token_id, token_family=family)
        oauth_services.oauth_code_reuse_revoke(code=code, application=request.client)
        raise errors.InvalidGrantError(request=request)
