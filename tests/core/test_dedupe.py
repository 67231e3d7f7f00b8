from core.dedupe import RecentKeys


def test_each_key_is_new_once_and_memory_is_bounded() -> None:
    seen = RecentKeys(size=2)
    assert seen.first_time("a") and seen.first_time("b")
    assert not seen.first_time("a")  # a repeat; "a" becomes the most recent
    assert seen.first_time("c")  # evicts "b", the least recent
    assert "b" not in seen and "a" in seen and len(seen) == 2
    assert seen.first_time("b")
