from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import MemoryIdentityStore, StaticSecrets
from tollgate.clock import FixedClock
from tollgate.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from tollgate.identity.keys import KeyHasher
from tollgate.identity.models import Caller, Role
from tollgate.identity.service import IdentityService, issue_admin_key

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def store() -> MemoryIdentityStore:
    return MemoryIdentityStore()


@pytest.fixture
def secrets() -> StaticSecrets:
    return StaticSecrets()


@pytest.fixture
def service(store: MemoryIdentityStore, secrets: StaticSecrets, clock: FixedClock) -> IdentityService:
    return IdentityService(store, secrets, plan_names=frozenset({"free", "starter"}), clock=clock)


@pytest.fixture
def admin(secrets: StaticSecrets) -> tuple[str, Caller]:
    plain, record = issue_admin_key(KeyHasher(secrets.pepper))
    secrets.admin = record
    return plain.value, Caller(key_id=record.key_id, user="admin", role=Role.ADMIN)


def test_admin_key_authenticates_as_admin(service: IdentityService, admin: tuple[str, Caller]) -> None:
    caller = service.authenticate(f"Bearer {admin[0]}")
    assert caller.role is Role.ADMIN
    assert caller.org_id is None


def test_an_org_key_authenticates_with_org_and_plan(
    service: IdentityService, admin: tuple[str, Caller]
) -> None:
    # Given an org with an owner key
    org = service.create_org(admin[1], name="Acme", plan="starter")
    issued = service.issue_key(admin[1], org.org_id, user="alice", name="ci", role=Role.OWNER)
    # When the key is presented
    caller = service.authenticate(f"Bearer {issued.plain.value}")
    # Then it is that org's owner on that plan
    assert (caller.org_id, caller.user, caller.role, caller.plan) == (
        org.org_id,
        "alice",
        Role.OWNER,
        "starter",
    )


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer not-a-key"])
def test_missing_or_malformed_keys_are_unauthorized(service: IdentityService, header: str | None) -> None:
    with pytest.raises(Unauthorized):
        service.authenticate(header)


def test_revoked_and_expired_keys_are_unauthorized(
    service: IdentityService, admin: tuple[str, Caller], clock: FixedClock
) -> None:
    org = service.create_org(admin[1], name="Acme", plan="free")
    revoked = service.issue_key(admin[1], org.org_id, user="a", name="a", role=Role.MEMBER)
    expiring = service.issue_key(
        admin[1], org.org_id, user="b", name="b", role=Role.MEMBER, expires_at=NOW + timedelta(minutes=5)
    )
    service.revoke_key(admin[1], revoked.record.key_id)
    with pytest.raises(Unauthorized, match="revoked"):
        service.authenticate(f"Bearer {revoked.plain.value}")
    assert service.authenticate(f"Bearer {expiring.plain.value}").user == "b"
    clock.set(NOW + timedelta(minutes=6))
    with pytest.raises(Unauthorized, match="expired"):
        service.authenticate(f"Bearer {expiring.plain.value}")


def test_last_used_is_recorded_coarsely(
    service: IdentityService, store: MemoryIdentityStore, admin: tuple[str, Caller], clock: FixedClock
) -> None:
    org = service.create_org(admin[1], name="Acme", plan="free")
    issued = service.issue_key(admin[1], org.org_id, user="a", name="a", role=Role.MEMBER)
    for _ in range(5):
        service.authenticate(f"Bearer {issued.plain.value}")
    assert store.touches == 1
    clock.set(NOW + timedelta(hours=2))
    service.authenticate(f"Bearer {issued.plain.value}")
    assert store.touches == 2


def test_a_member_cannot_create_keys_and_other_orgs_are_not_found(
    service: IdentityService, admin: tuple[str, Caller]
) -> None:
    org_a = service.create_org(admin[1], name="A", plan="free")
    org_b = service.create_org(admin[1], name="B", plan="free")
    member = service.authenticate(
        "Bearer "
        + service.issue_key(admin[1], org_a.org_id, user="m", name="m", role=Role.MEMBER).plain.value
    )
    owner = service.authenticate(
        "Bearer " + service.issue_key(admin[1], org_a.org_id, user="o", name="o", role=Role.OWNER).plain.value
    )
    with pytest.raises(Forbidden):
        service.issue_key(member, org_a.org_id, user="x", name="x", role=Role.MEMBER)
    with pytest.raises(NotFound):
        service.issue_key(owner, org_b.org_id, user="x", name="x", role=Role.MEMBER)
    with pytest.raises(NotFound):
        service.get_org(owner, org_b.org_id)


def test_only_the_admin_creates_orgs_and_plans_are_checked(
    service: IdentityService, admin: tuple[str, Caller]
) -> None:
    org = service.create_org(admin[1], name="A", plan="free")
    owner = service.authenticate(
        "Bearer " + service.issue_key(admin[1], org.org_id, user="o", name="o", role=Role.OWNER).plain.value
    )
    with pytest.raises(Forbidden):
        service.create_org(owner, name="B", plan="free")
    with pytest.raises(ValidationFailed) as refused:
        service.create_org(admin[1], name="B", plan="platinum")
    assert refused.value.errors[0].field == "plan"


def test_rotation_issues_a_new_key_and_ends_the_old_one(
    service: IdentityService, admin: tuple[str, Caller], clock: FixedClock
) -> None:
    org = service.create_org(admin[1], name="A", plan="free")
    old = service.issue_key(admin[1], org.org_id, user="o", name="ci", role=Role.OWNER)
    owner = service.authenticate(f"Bearer {old.plain.value}")
    # When rotated with a grace period of a minute
    new = service.rotate_key(owner, old.record.key_id, timedelta(minutes=1))
    # Then both work during the grace period, and only the new one after it
    assert new.record.name == "ci"
    assert new.record.role is Role.OWNER
    assert service.authenticate(f"Bearer {old.plain.value}").key_id == old.record.key_id
    clock.set(NOW + timedelta(minutes=2))
    with pytest.raises(Unauthorized):
        service.authenticate(f"Bearer {old.plain.value}")
    assert service.authenticate(f"Bearer {new.plain.value}").key_id == new.record.key_id


def test_members_only_see_and_manage_their_own_keys(
    service: IdentityService, admin: tuple[str, Caller]
) -> None:
    org = service.create_org(admin[1], name="A", plan="free")
    mine = service.issue_key(admin[1], org.org_id, user="m", name="m", role=Role.MEMBER)
    theirs = service.issue_key(admin[1], org.org_id, user="n", name="n", role=Role.MEMBER)
    member = service.authenticate(f"Bearer {mine.plain.value}")
    assert [k.key_id for k in service.list_keys(member)] == [mine.record.key_id]
    with pytest.raises(NotFound):
        service.revoke_key(member, theirs.record.key_id)
