from tests.conftest import all_archs


def test_all_archs_is_the_whole_space():
    archs = all_archs()
    assert len(archs) == 15625 == len(set(archs))
