"""The e-mail backend used when no SMTP server is configured and DEBUG is off.

Password-reset mails carry a live token. Printing them to stderr (Django's
console backend) puts that token in the logs of every production install
that has not set ``EMAIL_HOST`` yet, where log readers can take over any
account. This backend sends nothing and logs only that a mail was dropped,
with its subject and recipient count: never the body, never an address.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

logger = logging.getLogger(__name__)


class DroppingEmailBackend(BaseEmailBackend):
    """Drop every message and log a warning without its content."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            logger.warning(
                "e-mail not sent: EMAIL_HOST is not set",
                extra={"subject": message.subject, "recipients": len(message.recipients())},
            )
        return 0
