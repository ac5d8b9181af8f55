import pytest

from adapter_core import AdapterConfig, AdapterError


def test_json_round_trip_keeps_every_field():
    config = AdapterConfig(
        reduction_factor=16,
        placement="parallel",
        activation="tanh",
        init="xavier",
        dropout=0.1,
        scaling=2.0,
        leave_out=[3, 1],
        target_modules={"layers": "model.layers", "ffn": "mlp.down_proj"},
    )
    again = AdapterConfig.from_json(config.to_json())
    assert again == config
    assert again.leave_out == [1, 3]


def test_bottleneck_direct_or_from_reduction_factor():
    assert AdapterConfig().bottleneck_for(384) == 64
    assert AdapterConfig(bottleneck=16).bottleneck_for(768) == 16
    assert AdapterConfig(reduction_factor=16).bottleneck_for(768) == 48


def test_parallel_defaults_to_scaling_four_serial_to_one():
    assert AdapterConfig(placement="parallel").scaling == 4.0
    assert AdapterConfig(placement="houlsby").scaling == 1.0


def test_placement_decides_the_sublayers():
    assert AdapterConfig(placement="pfeiffer").slots == ("ffn",)
    assert "attn" in AdapterConfig(placement="houlsby").slots


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bottleneck": 0}, "bottleneck must be a positive whole number, got 0"),
        ({"bottleneck": -4}, "bottleneck must be a positive whole number"),
        ({"bottleneck": 8, "reduction_factor": 4}, "either bottleneck or reduction_factor, not both"),
        ({"reduction_factor": 0}, "reduction_factor must be a positive number"),
        ({"placement": "sideways"}, "placement must be one of houlsby, pfeiffer, parallel; got 'sideways'"),
        ({"activation": "softmax"}, "activation must be one of gelu, relu, swish, tanh"),
        ({"init": "zeros"}, "init must be one of normal, kaiming, xavier, houlsby"),
        ({"dropout": 1.5}, "dropout must be in [0, 1)"),
        ({"leave_out": [-1]}, "leave_out holds layer indices"),
        ({"target_modules": {"attn": "x"}}, "target_modules needs 'layers'"),
    ],
)
def test_bad_settings_say_what_is_wrong(kwargs, message):
    with pytest.raises(AdapterError) as err:
        AdapterConfig(**kwargs)
    assert message in str(err.value)


def test_unknown_json_field_is_named():
    with pytest.raises(AdapterError, match="Unknown adapter config field"):
        AdapterConfig.from_dict({"bottleneck": 8, "rank": 4})
