"""The bar chart's value axis leaves room for the printed values and the oracle line."""

import pytest

from simulations.report import bar_axis_limit


@pytest.mark.parametrize("values, oracle", [([0.25, 0.41, 0.39], 0.431), ([0.25, 0.45], 0.43), ([3.3, 0.5], None)])
def test_the_axis_ends_past_the_longest_bar_and_the_oracle(values, oracle):
    limit = bar_axis_limit(values, oracle)
    top = max(values + ([oracle] if oracle is not None else []))
    assert limit >= top * 1.1, "the longest bar or the oracle line would touch the edge"
    assert limit <= top * 1.5, "the bars would be squeezed into a corner"


def test_an_all_zero_chart_still_has_an_axis():
    assert bar_axis_limit([0.0, 0.0]) == 1.0
