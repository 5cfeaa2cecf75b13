"""GenerationService with a template (S8) and with writes staged by the caller (S8b), without
AWS: the record and the usage log entry name the template version, the declared price is what
metering is asked to charge, and what the context stages is committed with the charge, only
for a completed request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.unit.test_generation_service import NOW, FakeMetering, FakeMock, MemoryCache, MemoryStore
from tests.unit.test_template_service import OWNER, MemoryTemplateStore
from tollgate.clock import FixedClock
from tollgate.errors import NotFound, ValidationFailed
from tollgate.generation.context import RequestContext, TemplateBinding
from tollgate.generation.records import GenerationRecord, RequestStatus
from tollgate.generation.registry import load_models
from tollgate.generation.requests import ChatCompletionRequest, GenerateRequest
from tollgate.generation.service import GenerationService
from tollgate.metering.pricing import FeatureRule, load_features
from tollgate.providers.catalog import ProviderCatalog
from tollgate.providers.errors import UpstreamError
from tollgate.templates.binding import TemplateBinder
from tollgate.templates.service import TemplateService
from tollgate.usage.log import UsageLogEntry


@dataclass(frozen=True)
class Staged:
    """Staged writes of these fakes: applied in order when metering commits them."""

    actions: tuple[Callable[[], None], ...]

    @property
    def count(self) -> int:
        return len(self.actions)

    def plus(self, other: Any) -> Staged:
        return Staged(self.actions + other.actions)


def commit(staged: Staged | None) -> None:
    for action in staged.actions if staged else ():
        action()


class StagingStore(MemoryStore):
    def stage(self, record: GenerationRecord, log: UsageLogEntry | None = None) -> Staged:  # type: ignore[override]
        return Staged((lambda: self.save(record, log),))


class StagingMetering(FakeMetering):
    """FakeMetering whose commits apply ``Staged`` writes."""

    def settle(self, org_id: str, reservation_id: str, actual: Any, attach: Any = None) -> Any:
        return super().settle(
            org_id, reservation_id, actual, lambda s: _Applied(commit, attach(s)) if attach else None
        )

    def release(self, org_id: str, reservation_id: str, attach: Any = None) -> Any:
        return super().release(
            org_id, reservation_id, lambda r: _Applied(commit, attach(r)) if attach else None
        )

    def charge(self, caller: Any, feature: Any, usage: Any, reservation_id: str, attach: Any = None) -> Any:
        return super().charge(
            caller, feature, usage, reservation_id, lambda s: _Applied(commit, attach(s)) if attach else None
        )


@dataclass(frozen=True)
class _Applied:
    """Looks like the base fake's MemoryStaged: ``apply`` commits the real staged writes."""

    run: Callable[[Staged | None], None]
    staged: Staged | None

    def apply(self) -> None:
        self.run(self.staged)


@dataclass
class World:
    generation: GenerationService
    provider: FakeMock
    metering: StagingMetering
    store: StagingStore
    templates: TemplateService
    template_store: MemoryTemplateStore
    staged_uses: list[Any]


@pytest.fixture
def world() -> World:
    provider, metering, store = FakeMock(), StagingMetering(), StagingStore()
    template_store = MemoryTemplateStore()
    staged_uses: list[Any] = []
    # A use staged with the charge is recorded when (and only if) metering commits it.
    template_store.stage_use = lambda use: Staged((lambda: staged_uses.append(use),))  # type: ignore[assignment,method-assign,return-value]
    templates = TemplateService(template_store, load_models(), load_features(), clock=FixedClock(NOW))
    binder = TemplateBinder(templates)
    generation = GenerationService(
        ProviderCatalog([provider]),
        metering,
        store,
        MemoryCache(),
        load_models(),
        clock=FixedClock(NOW),
        templates=lambda: binder,
    )
    return World(generation, provider, metering, store, templates, template_store, staged_uses)


PRICED = {
    "name": "Describe",
    "body": "Describe {{ thing }}.",
    "variables": [{"name": "thing"}],
    "params": {"model": "mock/chat", "max_tokens": 30},
    "feature": "describe",
    "price": {"rule": "flat", "credits": 2_500},
}


def ctx(request_id: str) -> RequestContext:
    return RequestContext(caller=OWNER, request_id=request_id)


def generate(world: World, request_id: str, **body: Any) -> Any:
    return world.generation.generate(ctx(request_id), GenerateRequest.model_validate(body))


def test_a_templated_generation_is_charged_the_declared_price_and_names_the_version(world: World) -> None:
    # Given a private template with a flat price
    template = world.templates.create(OWNER, PRICED)
    # When it generates
    outcome = generate(world, "r1", template_id=template.template_id, variables={"thing": "a mug"})
    # Then the provider got the rendered prompt with the template's budget
    (sent,) = world.provider.chats
    assert [m.content for m in sent.messages] == ["Describe a mug."]
    assert sent.max_tokens == 30
    # And metering was asked to reserve and settle under the template's own rule
    kind, (feature, _estimate, _rid) = world.metering.calls[0]
    assert kind == "reserve"
    assert isinstance(feature, FeatureRule)
    assert (feature.name, feature.rule, feature.credits) == ("describe", "flat", 2_500)
    assert outcome.credits_charged == 2_500
    # And the record and its usage log entry name the template and version, under its feature
    record = world.store.records[("org_a", "r1")]
    assert (record.template_id, record.template_version, record.feature) == (
        template.template_id,
        1,
        "describe",
    )
    (entry,) = world.store.log
    assert (entry.template_id, entry.template_version, entry.credits) == (template.template_id, 1, 2_500)
    # And the template's use was committed with the charge (a private template), not after it
    assert [(u.template_id, u.version) for u in world.staged_uses] == [(template.template_id, 1)]
    assert world.template_store.counted == []


def test_the_use_of_a_private_template_is_committed_with_the_charge_only_when_it_completes(
    world: World,
) -> None:
    template = world.templates.create(OWNER, PRICED)
    generate(world, "r1", template_id=template.template_id, variables={"thing": "a mug"})
    assert [u.version for u in world.staged_uses] == [1]
    # When the provider fails, nothing is counted (and the failure is recorded with the template)
    world.provider.fail = UpstreamError("boom", provider="mock", upstream_status=500)
    with pytest.raises(UpstreamError):
        generate(world, "r2", template_id=template.template_id, variables={"thing": "a cup"})
    assert [u.version for u in world.staged_uses] == [1]
    failed = world.store.records[("org_a", "r2")]
    assert (failed.status, failed.template_id) == (RequestStatus.FAILED, template.template_id)


def test_a_cache_hit_from_a_template_is_recorded_and_counted_too(world: World) -> None:
    template = world.templates.create(OWNER, PRICED)
    generate(world, "r1", template_id=template.template_id, variables={"thing": "a mug"})
    hit = generate(world, "r2", template_id=template.template_id, variables={"thing": "a mug"})
    assert hit.cache_hit is True
    assert world.store.records[("org_a", "r2")].template_id == template.template_id
    assert len(world.staged_uses) == 2


def test_a_public_templates_use_is_counted_after_the_charge(world: World) -> None:
    from tests.unit.test_template_service import ADMIN

    template = world.templates.create(ADMIN, PRICED)
    generate(world, "r1", template_id=template.template_id, variables={"thing": "a mug"})
    assert [(u.owner, u.template_id) for u in world.template_store.counted] == [
        ("PUBLIC", template.template_id)
    ]
    assert world.staged_uses == []


def test_regenerating_a_templated_request_keeps_its_version_and_price(world: World) -> None:
    template = world.templates.create(OWNER, PRICED)
    generate(world, "r1", template_id=template.template_id, variables={"thing": "a mug"})
    world.templates.update(OWNER, template.template_id, {"price": {"rule": "flat", "credits": 9_000}})
    outcome = world.generation.regenerate(ctx("r2"), "r1")
    record = outcome.record
    assert (record.template_id, record.template_version, record.parent_id) == (template.template_id, 1, "r1")
    assert outcome.credits_charged == 2_500


def test_invalid_variables_charge_nothing_and_reach_no_provider(world: World) -> None:
    template = world.templates.create(OWNER, PRICED)
    with pytest.raises(ValidationFailed) as caught:
        generate(world, "r1", template_id=template.template_id, variables={"thing": 3, "extra": "x"})
    assert {e.field for e in caught.value.errors} == {"variables.thing", "variables.extra"}
    assert world.metering.calls == []
    assert world.provider.chats == []


def test_without_templates_wired_a_template_id_is_not_found() -> None:
    service = GenerationService(
        ProviderCatalog([FakeMock()]), FakeMetering(), MemoryStore(), MemoryCache(), load_models()
    )
    with pytest.raises(NotFound):
        service.generate(ctx("r1"), GenerateRequest.model_validate({"template_id": "tpl_x"}))


def test_a_prompt_without_a_model_names_the_field(world: World) -> None:
    with pytest.raises(ValidationFailed) as caught:
        generate(world, "r1", prompt="Hello")
    assert caught.value.errors[0].field == "model"


def test_what_the_context_stages_is_committed_with_a_completed_charge_only(world: World) -> None:
    # Given a context that stages one more write for a completed request (a conversation's)
    seen: list[str] = []

    def also(record: GenerationRecord) -> Staged:
        return Staged((lambda: seen.append(record.request_id),))

    chat = ChatCompletionRequest.model_validate(
        {"model": "mock/chat", "messages": [{"role": "user", "content": "Hi"}]}
    )
    # When one request completes and another fails
    world.generation.chat(RequestContext(caller=OWNER, request_id="ok", staged_with=also), chat)
    world.provider.fail = UpstreamError("boom", provider="mock", upstream_status=500)
    with pytest.raises(UpstreamError):
        world.generation.chat(
            RequestContext(caller=OWNER, request_id="ko", staged_with=also),
            chat.model_copy(update={"seed": 1}),
        )
    # Then only the completed one committed it
    assert seen == ["ok"]
    assert TemplateBinding("tpl_x", 1).stage_use is None
