"""Renewing the runtime's storage grants (the slug URLs in app namespaces) now and then, one replica at a time.

The runtime renews them once at start (its reconcile); this loop does it every
TERESA_SLUG_URL_REFRESH_INTERVAL seconds under the `periodic:grants` lease, as the
backup does under `periodic:backup`: the replica that takes the lease renews, the
others skip the round.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import SQLAlchemyError

from controller.runtime.base import Runtime, RuntimeFailure
from core import leases, log
from core.services import Services

logger = log.get(__name__)
LEASE = "periodic:grants"


async def renew_once(services: Services, runtime: Runtime) -> int | None:
    """Renew under the lease; None when another replica holds it (or the database is away)."""
    settings = services.settings
    try:
        async with leases.held(services.db, LEASE, "grant renewal", settings.replica_name,
                               settings.deploy_lease_seconds):
            return await runtime.refresh_grants()
    except (leases.LeaseTaken, leases.LeaseLost):  # lost: stopped, another replica renews them
        return None
    except SQLAlchemyError as exc:
        logger.warning("grant_renewal_lease_unavailable", error=type(exc).__name__)
        return None


async def renewal_loop(services: Services, runtime: Runtime) -> None:
    """For `teresa serve`: renew every interval, until cancelled; a failed round is logged and retried next time."""
    while True:
        await asyncio.sleep(services.settings.kubernetes.slug_url_refresh)
        try:
            renewed = await renew_once(services, runtime)
        except RuntimeFailure as exc:
            logger.warning("grant_renewal_failed", error=str(exc))
            continue
        if renewed is not None:
            logger.info("grants_renewed", count=renewed)
