import pytest

from mango import MangoError, TargetSpec


@pytest.mark.parametrize("text, layer, unit, pos", [
    ("class:3", None, 3, None),
    ("lif2:17", "lif2", 17, None),
    ("layer1.0.conv1:17", "layer1.0.conv1", 17, None),
    ("features.3:17@4,5", "features.3", 17, (4, 5)),
    (" conv1:0 ", "conv1", 0, None),
])
def test_parse_valid(text, layer, unit, pos):
    spec = TargetSpec.parse(text)
    assert (spec.layer, spec.unit, spec.position) == (layer, unit, pos)
    assert TargetSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "class", "class:", "class:-1", "lif2", "lif2:x", ":3", "lif2:3@4",
                                  "lif2:3@4,5,6", "class:3@1,1", "3:4", "lif 2:3"])
def test_parse_malformed_names_value_and_forms(text):
    with pytest.raises(MangoError) as exc:
        TargetSpec.parse(text)
    msg = str(exc.value)
    assert repr(text) in msg and "class:N" in msg or "no position" in msg
    assert "\n" not in msg
