"""What the console pages act through: the same services as the API, gathered by bootstrap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchboard.automations.service import AutomationService
from switchboard.clock import Clock
from switchboard.config import ConsoleSettings
from switchboard.console.sessions import OperatorService, SessionManager
from switchboard.fraud.guard import FraudGuard
from switchboard.integrations.clevertap.service import CleverTapService
from switchboard.services.accounts import AccountService
from switchboard.services.billing import BillingService
from switchboard.services.callbacks import CallbackService
from switchboard.services.integration_keys import IntegrationKeyService
from switchboard.services.logs import LogService
from switchboard.services.messaging import MessagingService
from switchboard.services.statistics import StatisticsService
from switchboard.services.verification import VerificationService


class Outbox(Protocol):
    async def entries(
        self, account_id: str | None = None, *, after_id: int = 0, limit: int = 50
    ) -> list[dict[str, Any]]:
        """What the sandbox carrier sent, newest last."""
        ...


@dataclass(frozen=True, slots=True)
class IntegrationPanel:
    """A CRM integration's entry on the Integrations page (registered by its package)."""

    name: str
    description: str
    href: str  # its settings page, under /console/


@dataclass(slots=True, kw_only=True)
class ConsoleServices:
    settings: ConsoleSettings
    clock: Clock
    accounts: AccountService
    verification: VerificationService
    messaging: MessagingService
    callbacks: CallbackService
    billing: BillingService
    integration_keys: IntegrationKeyService
    logs: LogService
    statistics: StatisticsService
    sessions: SessionManager
    operators: OperatorService
    outbox: Outbox
    queue_depth: Callable[[], Awaitable[dict[str, int]]]
    connectors: Callable[[], list[dict[str, Any]]]
    max_upload_bytes: int
    integrations: list[IntegrationPanel] = field(default_factory=list)
    # the rooms whose settings have pages here (crm.py); None where the server has none
    automations: AutomationService | None = None
    clevertap: CleverTapService | None = None
    fraud: FraudGuard | None = None
