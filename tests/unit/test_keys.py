import pytest

from tollgate.identity.keys import KeyHasher, MalformedKey, generate_key, parse_key


def test_a_generated_key_parses_back_to_its_id() -> None:
    key = generate_key()
    assert key.value.startswith("tg_")
    assert parse_key(key.value).key_id == key.key_id
    assert key.hint.endswith(key.value[-4:])
    assert key.value[20:40] not in key.hint


def test_keys_are_unique() -> None:
    assert len({generate_key().value for _ in range(500)}) == 500


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tg_",
        "sk-abcdef",
        "tg_short_abc",
        "TG_" + "A" * 12 + "_" + "B" * 38,
        "tg_" + "é" * 12 + "_" + "B" * 38,
    ],
)
def test_text_that_is_not_a_key_is_refused(text: str) -> None:
    with pytest.raises(MalformedKey):
        parse_key(text)


def test_a_mistyped_key_fails_its_checksum() -> None:
    # Given a valid key with one character of the secret changed
    key = generate_key().value
    position = 20
    swapped = "A" if key[position] != "A" else "B"
    mistyped = key[:position] + swapped + key[position + 1 :]
    # Then it is refused before any lookup
    with pytest.raises(MalformedKey, match="checksum"):
        parse_key(mistyped)


def test_the_hash_depends_on_the_pepper_and_never_contains_the_key() -> None:
    key = generate_key()
    first, second = KeyHasher(b"p" * 32), KeyHasher(b"q" * 32)
    assert first.hash(key) != second.hash(key)
    assert key.value not in first.hash(key)
    assert first.matches(key, first.hash(key))
    assert not first.matches(generate_key(), first.hash(key))


def test_a_short_pepper_is_refused() -> None:
    with pytest.raises(ValueError, match="pepper"):
        KeyHasher(b"short")
