import stormproof


def test_version_is_exposed() -> None:
    assert stormproof.__version__.count(".") >= 2
