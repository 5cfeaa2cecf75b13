"""TemplateService without AWS (an in-memory store): roles and tenancy, versions, rendering for
text and images, binding a generation, counting uses, and seeding the starter templates. The
conditional writes themselves are checked against moto in tests/integration/test_templates_api.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from msgspec.structs import replace

from tollgate.clock import FixedClock
from tollgate.errors import Conflict, Forbidden, NotFound, ValidationFailed
from tollgate.generation.context import RequestContext
from tollgate.generation.registry import load_models
from tollgate.generation.requests import GenerateRequest
from tollgate.identity.models import Caller, Role
from tollgate.metering.pricing import FeatureRule, load_features
from tollgate.templates.binding import TemplateBinder
from tollgate.templates.models import PUBLIC_OWNER, Template, TemplateUse, TemplateVersion
from tollgate.templates.ports import TemplateExists, VersionConflict
from tollgate.templates.service import TemplateService
from tollgate.templates.starter import load_starters, seed_starters

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
OWNER = Caller(key_id="key_o", user="olga", role=Role.OWNER, org_id="org_a", plan="starter")
MEMBER = Caller(key_id="key_m", user="mia", role=Role.MEMBER, org_id="org_a", plan="starter")
OTHER = Caller(key_id="key_x", user="xavier", role=Role.OWNER, org_id="org_b", plan="starter")
ADMIN = Caller(key_id="key_admin", user="admin", role=Role.ADMIN)

GREETING = {
    "name": "Greeting",
    "body": "Say hello to {{ who }} in {{ lang }}.",
    "variables": [
        {"name": "who", "max_length": 30},
        {"name": "lang", "type": "enum", "values": ["en", "fr"], "default": "en"},
    ],
    "params": {"model": "mock/chat", "max_tokens": 40, "temperature": 0.5},
}
PHOTO = {
    "name": "Photo",
    "kind": "image",
    "body": "A photo of a {{ kind }}.",
    "variables": [{"name": "kind"}],
    "params": {"model": "mock/image", "size": "512x512", "quality": "standard"},
    "price": {"rule": "flat", "credits": 7_500},
}


@dataclass(frozen=True)
class MemoryStaged:
    writes: tuple[TemplateUse, ...]

    @property
    def count(self) -> int:
        return 2 * len(self.writes)

    def plus(self, other: Any) -> MemoryStaged:
        return MemoryStaged(self.writes + other.writes)


class MemoryTemplateStore:
    """The ``TemplateStore`` contract in memory, conditions included."""

    def __init__(self) -> None:
        self.heads_by_key: dict[tuple[str, str], Template] = {}
        self.versions: dict[tuple[str, str, int], TemplateVersion] = {}
        self.counted: list[TemplateUse] = []

    def heads(self, owners: Sequence[str], template_id: str) -> list[Template]:
        return [self.heads_by_key[(o, template_id)] for o in owners if (o, template_id) in self.heads_by_key]

    def version(
        self, owners: Sequence[str], template_id: str, version: int
    ) -> tuple[TemplateVersion | None, Template | None]:
        for owner in owners:
            head = self.heads_by_key.get((owner, template_id))
            if head is not None:
                found = self.versions.get((owner, template_id, version))
                return (replace(found, template_deleted=head.deleted_at is not None) if found else None), head
        return None, None

    def _write_version(self, template: Template) -> None:
        key = (template.owner, template.template_id, template.version)
        if key in self.versions:
            raise VersionConflict(template.template_id)
        self.versions[key] = TemplateVersion(
            template.template_id,
            template.owner,
            template.version,
            template.definition,
            template.updated_at,
            template.updated_by,
        )

    def create(self, template: Template) -> None:
        if (template.owner, template.template_id) in self.heads_by_key:
            raise TemplateExists(template.template_id)
        self._write_version(template)
        self.heads_by_key[(template.owner, template.template_id)] = template

    def save_version(self, template: Template, previous_version: int) -> None:
        head = self.heads_by_key.get((template.owner, template.template_id))
        if head is None or head.version != previous_version or head.deleted_at is not None:
            raise VersionConflict(template.template_id)
        self._write_version(template)
        self.heads_by_key[(template.owner, template.template_id)] = replace(
            template, usage_count=head.usage_count
        )

    def mark_deleted(self, template: Template, at: datetime, by: str) -> None:
        head = self.heads_by_key[(template.owner, template.template_id)]
        if head.version != template.version or head.deleted_at is not None:
            raise VersionConflict(template.template_id)
        self.heads_by_key[(template.owner, template.template_id)] = replace(
            head, deleted_at=at, updated_by=by
        )

    def page(
        self, owner: str, category: str | None, limit: int, start: Mapping[str, Any] | None
    ) -> tuple[list[Template], dict[str, Any] | None]:
        live = sorted(
            (
                t
                for (o, _), t in self.heads_by_key.items()
                if o == owner and t.deleted_at is None and category in (None, t.definition.category)
            ),
            key=lambda t: (t.definition.category, t.template_id),
        )
        after = [t for t in live if start is None or t.template_id > start["id"]]
        page = after[:limit]
        return page, ({"id": page[-1].template_id} if len(after) > limit else None)

    def check_start(self, owner: str, category: str | None, start: Mapping[str, Any]) -> bool:
        return set(start) == {"id"}

    def stage_use(self, use: TemplateUse) -> MemoryStaged:
        return MemoryStaged((use,))

    def count_use(self, use: TemplateUse) -> None:
        self.counted.append(use)


@pytest.fixture
def store() -> MemoryTemplateStore:
    return MemoryTemplateStore()


@pytest.fixture
def service(store: MemoryTemplateStore) -> TemplateService:
    return TemplateService(store, load_models(), load_features(), clock=FixedClock(NOW))


# -- roles and tenancy ---------------------------------------------------------------------------


def test_an_owner_creates_a_private_template_of_its_org(service: TemplateService) -> None:
    template = service.create(OWNER, GREETING)
    assert (template.owner, template.visibility, template.version) == ("org_a", "private", 1)
    assert template.template_id.startswith("tpl_")
    assert template.created_by == "olga"


@pytest.mark.parametrize(
    ("caller", "visibility", "error"),
    [
        (MEMBER, None, Forbidden),
        (OWNER, "public", Forbidden),
        (ADMIN, "private", ValidationFailed),
    ],
)
def test_who_may_create_what(
    service: TemplateService, caller: Caller, visibility: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        service.create(caller, GREETING, visibility)


def test_the_admin_creates_public_templates_every_org_reads(service: TemplateService) -> None:
    public = service.create(ADMIN, GREETING)
    assert public.owner == PUBLIC_OWNER
    assert service.get(OTHER, public.template_id).template_id == public.template_id
    assert service.get(MEMBER, public.template_id).visibility == "public"


def test_another_orgs_private_template_is_not_found_for_everything(service: TemplateService) -> None:
    # Given a template of org A
    template = service.create(OWNER, GREETING)
    tid = template.template_id
    # Then org B can neither read, version, update, delete nor render it: it does not exist for B
    for attempt in (
        lambda: service.get(OTHER, tid),
        lambda: service.get_version(OTHER, tid, 1),
        lambda: service.update(OTHER, tid, {"name": "mine"}),
        lambda: service.delete(OTHER, tid),
        lambda: service.render(OTHER, tid, {"who": "B"}),
        lambda: service.get(ADMIN, tid),
    ):
        with pytest.raises(NotFound):
            attempt()


def test_members_read_and_render_but_do_not_write(service: TemplateService) -> None:
    template = service.create(OWNER, GREETING)
    assert service.render(MEMBER, template.template_id, {"who": "Ann"}).prompt == "Say hello to Ann in en."
    with pytest.raises(Forbidden):
        service.update(MEMBER, template.template_id, {"name": "x"})
    with pytest.raises(Forbidden):
        service.delete(MEMBER, template.template_id)


def test_public_templates_are_written_by_the_admin_only(service: TemplateService) -> None:
    public = service.create(ADMIN, GREETING)
    for caller in (OWNER, MEMBER):
        with pytest.raises(Forbidden):
            service.update(caller, public.template_id, {"name": "x"})
        with pytest.raises(Forbidden):
            service.delete(caller, public.template_id)
    assert service.update(ADMIN, public.template_id, {"name": "Hello"}).version == 2


def test_an_id_that_cannot_be_one_is_not_found(service: TemplateService) -> None:
    with pytest.raises(NotFound):
        service.get(OWNER, "../etc/passwd")


# -- versions ------------------------------------------------------------------------------------


def test_an_update_makes_a_new_version_and_the_old_one_renders_as_it_did(service: TemplateService) -> None:
    # Given version 1, then an update of the body
    template = service.create(OWNER, GREETING)
    updated = service.update(OWNER, template.template_id, {"body": "Greet {{ who }} warmly ({{ lang }})."})
    # Then the template is at version 2, keeping what was not changed
    assert updated.version == 2
    assert updated.definition.params == template.definition.params
    # And the current version renders the new body, version 1 the old one
    tid = template.template_id
    assert service.render(MEMBER, tid, {"who": "Bo"}).prompt == "Greet Bo warmly (en)."
    old = service.render(MEMBER, tid, {"who": "Bo"}, version=1)
    assert (old.prompt, old.template_version) == ("Say hello to Bo in en.", 1)
    assert service.get_version(MEMBER, tid, 1).definition.body == GREETING["body"]


def test_an_update_that_changes_nothing_makes_no_version(service: TemplateService) -> None:
    template = service.create(OWNER, GREETING)
    assert service.update(OWNER, template.template_id, {"name": "Greeting"}).version == 1


def test_an_update_based_on_an_old_version_is_a_conflict(service: TemplateService) -> None:
    template = service.create(OWNER, GREETING)
    service.update(OWNER, template.template_id, {"name": "Two"}, base_version=1)
    with pytest.raises(Conflict):
        service.update(OWNER, template.template_id, {"name": "Three"}, base_version=1)


def test_an_invalid_update_names_its_fields_and_writes_nothing(service: TemplateService) -> None:
    template = service.create(OWNER, GREETING)
    with pytest.raises(ValidationFailed) as caught:
        service.update(OWNER, template.template_id, {"body": "{{ who }} {{ nobody }}"})
    assert [(e.field, "nobody" in e.message) for e in caught.value.errors] == [("body", True)]
    with pytest.raises(ValidationFailed) as caught:
        service.update(OWNER, template.template_id, {"category": "Bad Cat", "kind": "video"})
    assert {e.field for e in caught.value.errors} == {"category", "kind"}
    assert service.get(OWNER, template.template_id).version == 1


def test_a_deleted_template_stops_resolving_but_its_versions_stay_readable(service: TemplateService) -> None:
    template = service.create(OWNER, GREETING)
    service.delete(OWNER, template.template_id)
    with pytest.raises(NotFound):
        service.get(MEMBER, template.template_id)
    with pytest.raises(NotFound):
        service.render(MEMBER, template.template_id, {"who": "x"}, version=1)
    assert service.get_version(MEMBER, template.template_id, 1).template_deleted is True


def test_asking_for_a_version_that_does_not_exist_names_the_field(service: TemplateService) -> None:
    template = service.create(OWNER, GREETING)
    with pytest.raises(ValidationFailed) as caught:
        service.render(MEMBER, template.template_id, {"who": "x"}, version=9)
    assert caught.value.errors[0].field == "version"


# -- rendering for images and for generation -----------------------------------------------------


def test_an_image_template_renders_into_the_image_request(service: TemplateService) -> None:
    # Given a public image template with a declared price
    template = service.create(ADMIN, PHOTO)
    # When an org renders it for /v1/images, asking for another size
    request = service.render_image(
        MEMBER, template.template_id, {"kind": "loft"}, overrides={"size": "256x256"}
    )
    # Then it has the prompt, the request's size over the template's, the template's other
    # defaults, the declared price, and what the job record names
    assert request.prompt == "A photo of a loft."
    assert request.as_fields() == {
        "prompt": "A photo of a loft.",
        "model": "mock/image",
        "size": "256x256",
        "quality": "standard",
    }
    assert isinstance(request.charged_as, FeatureRule)
    assert (request.charged_as.rule, request.charged_as.credits, request.charged_as.kind) == (
        "flat",
        7_500,
        "image",
    )
    assert request.charged_as.name == template.template_id  # a price without a feature name
    assert (request.template_id, request.template_version) == (template.template_id, 1)
    assert request.use == TemplateUse(PUBLIC_OWNER, template.template_id, 1)


def test_a_template_of_the_other_kind_is_refused(service: TemplateService) -> None:
    text = service.create(OWNER, GREETING)
    image = service.create(OWNER, PHOTO)
    with pytest.raises(ValidationFailed, match="template_id"):
        service.render_image(MEMBER, text.template_id, {"who": "x"})
    with pytest.raises(ValidationFailed) as caught:
        service.render(MEMBER, image.template_id, {"kind": "x"}, kind="text")
    assert "use it with /v1/images" in caught.value.errors[0].message


def test_a_rendering_that_is_empty_is_refused(service: TemplateService) -> None:
    template = service.create(
        OWNER, {"name": "E", "body": "{{ x }}", "variables": [{"name": "x", "required": False}]}
    )
    with pytest.raises(ValidationFailed, match="variables"):
        service.render(MEMBER, template.template_id, {})


def ctx(caller: Caller = MEMBER) -> RequestContext:
    return RequestContext(caller=caller, request_id="req-1")


def test_binding_a_generation_takes_the_templates_defaults_under_the_requests_own(
    service: TemplateService,
) -> None:
    # Given a template with a model and sampling defaults
    template = service.create(
        OWNER, {**GREETING, "feature": "greeting", "price": {"rule": "flat", "credits": 500}}
    )
    binder = TemplateBinder(service)
    body = GenerateRequest.model_validate(
        {"template_id": template.template_id, "variables": {"who": "Ann"}, "params": {"max_tokens": 10}}
    )
    # When the generation is bound to it
    bound_ctx, bound = binder.bind(ctx(), body)
    # Then the prompt is rendered, the model and temperature come from the template and the
    # request's max_tokens wins; the context names the version and carries the price
    assert (bound.prompt, bound.model, bound.template_id) == ("Say hello to Ann in en.", "mock/chat", None)
    assert (bound.params.max_tokens, bound.params.temperature) == (10, 0.5)
    assert bound.feature == "greeting"
    assert bound_ctx.template is not None
    assert (bound_ctx.template.template_id, bound_ctx.template.version) == (template.template_id, 1)
    assert bound_ctx.template.pricing is not None
    assert (bound_ctx.template.pricing.name, bound_ctx.template.pricing.credits) == ("greeting", 500)


def test_a_request_cannot_charge_a_template_as_another_feature(service: TemplateService) -> None:
    template = service.create(
        OWNER, {**GREETING, "feature": "greeting", "price": {"rule": "flat", "credits": 500}}
    )
    body = GenerateRequest.model_validate(
        {"template_id": template.template_id, "variables": {"who": "Ann"}, "feature": "text"}
    )
    with pytest.raises(ValidationFailed) as caught:
        TemplateBinder(service).bind(ctx(), body)
    assert caught.value.errors[0].field == "feature"


def test_a_template_without_a_model_needs_the_request_to_name_one(service: TemplateService) -> None:
    template = service.create(OWNER, {**GREETING, "params": {}})
    body = GenerateRequest.model_validate({"template_id": template.template_id, "variables": {"who": "Ann"}})
    with pytest.raises(ValidationFailed) as caught:
        TemplateBinder(service).bind(ctx(), body)
    assert caught.value.errors[0].field == "model"


def test_a_private_templates_use_is_staged_with_the_charge_a_public_one_counted_after(
    service: TemplateService, store: MemoryTemplateStore
) -> None:
    private = TemplateUse("org_a", "tpl_a", 3)
    public = TemplateUse(PUBLIC_OWNER, "tpl_p", 1)
    assert service.stage_use(private) == MemoryStaged((private,))
    assert service.stage_use(public) is None
    service.count_use(private)
    service.count_use(public)
    assert store.counted == [public]


def test_listing_pages_through_the_orgs_templates_then_the_public_ones(service: TemplateService) -> None:
    mine = {service.create(OWNER, GREETING).template_id for _ in range(3)}
    public = {service.create(ADMIN, GREETING).template_id for _ in range(2)}
    service.create(OTHER, GREETING)
    seen: list[str] = []
    cursor = None
    while True:
        page = service.list(MEMBER, limit=2, cursor=cursor)
        seen.extend(t.template_id for t in page.templates)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen[:3] == sorted(mine)
    assert set(seen[3:]) == public
    assert len(seen) == 5
    assert {t.template_id for t in service.list(MEMBER, visibility="public").templates} == public
    with pytest.raises(Exception, match="cursor"):
        service.list(OTHER, limit=2, cursor=service.list(MEMBER, limit=2).next_cursor)


# -- starter templates ---------------------------------------------------------------------------


def test_seeding_is_idempotent_and_a_changed_file_makes_a_new_version(
    service: TemplateService, store: MemoryTemplateStore
) -> None:
    starters = load_starters()
    # When the starters are seeded twice
    first = seed_starters(service, starters)
    second = seed_starters(service, starters)
    # Then they were created once, public, at version 1
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"unchanged"}
    ids = [s.template_id for s in starters]
    assert all(store.heads_by_key[(PUBLIC_OWNER, i)].version == 1 for i in ids)
    # When a shipped body changes
    changed = (
        replace(
            starters[0], definition=starters[0].definition.model_copy(update={"description": "New words."})
        ),
        *starters[1:],
    )
    third = seed_starters(service, changed)
    # Then that template gets version 2, the others stay as they were; and again changes nothing
    assert third[ids[0]] == "updated"
    assert store.heads_by_key[(PUBLIC_OWNER, ids[0])].version == 2
    assert [third[i] for i in ids[1:]] == ["unchanged"] * (len(ids) - 1)
    assert set(seed_starters(service, changed).values()) == {"unchanged"}


def test_a_starter_the_admin_deleted_stays_deleted(service: TemplateService) -> None:
    starters = load_starters()
    seed_starters(service, starters)
    service.delete(ADMIN, starters[0].template_id)
    assert seed_starters(service, starters)[starters[0].template_id] == "deleted"
    with pytest.raises(NotFound):
        service.get(MEMBER, starters[0].template_id)
