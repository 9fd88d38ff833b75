"""A Microsoft connection keeps its tenant (the id token's `tid`), read whenever the engine refreshes
the grant — a cycle or the health sweep — on SQLite and PostgreSQL; a Google connection has none."""

from __future__ import annotations

from calsync.sandbox.microsoft_common import SANDBOX_TENANT_ID
from tests.incidents.helpers import SCENARIOS
from tests.sync.conftest import SyncWorld


async def test_the_engine_stores_the_microsoft_tenant_of_each_connection(sync_world: SyncWorld) -> None:
    sync_world.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    sync_world.world.clear_faults()
    assert sync_world.connection("tess@tallgrass.example").tenant_id is None, "not known before a refresh"

    (cycle,) = await sync_world.engine.sync_user("tess@tallgrass.example")
    assert cycle.status == "ok", cycle
    assert sync_world.connection("tess@tallgrass.example").tenant_id == SANDBOX_TENANT_ID

    swept = await sync_world.engine.health_sweep()
    assert swept.ok == swept.checked == 6, swept
    for email in ("umar@tallgrass.example", "ben@northwind.example"):
        assert sync_world.connection(email).tenant_id == SANDBOX_TENANT_ID

    sync_world.sandbox.load_file(SCENARIOS / "incident-workspace-revoked.yaml")
    sync_world.world.clear_faults()
    await sync_world.engine.health_sweep()
    for email in ("bo@brightline.example", "ana@northwind.example"):
        assert sync_world.connection(email).tenant_id is None, "Google has no tenant"
