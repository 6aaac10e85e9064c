"""Which users train and which are tested (shared.users.split_users) and the config that sets it."""

from __future__ import annotations

import pytest

from shared.config import RunConfig, default_mapping
from shared.data import load_split
from shared.errors import ConfigError
from shared.synthetic import write_synthetic
from shared.users import split_users


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_split(write_synthetic(tmp_path_factory.mktemp("d"), "LaMP-7", n_users=8, items_per_user=4), "LaMP-7")


def test_free_training_users_follow_the_training_users_and_precede_the_test_users(dataset):
    plain_train, plain_test = split_users(dataset, train_users=2, test_users=3)
    train, test = split_users(dataset, train_users=2, test_users=3, free_train_users=2)
    assert [u.user_id for u in train[:2]] == [u.user_id for u in plain_train]
    assert len(train) == 4 and all(u.golds for u in train)
    assert not {u.user_id for u in train} & {u.user_id for u in test}
    assert all(not u.golds for u in test) and len(test) == 3
    # the test users moved past the free training users
    assert [u.user_id for u in test][0] == [u.user_id for u in plain_test][2]


def test_asking_for_more_users_than_the_data_has_counts_the_free_ones(dataset):
    with pytest.raises(ConfigError, match="7 training and 2 test users"):
        split_users(dataset, train_users=2, test_users=2, free_train_users=5)


def test_free_training_users_are_a_disjoint_protocol_setting():
    assert RunConfig.from_mapping({**default_mapping(), "data.free-train-users": 5}).free_train_users == 5
    with pytest.raises(ConfigError, match="data.free-train-users"):
        RunConfig.from_mapping({**default_mapping(), "data.free-train-users": 5, "data.protocol": "history"})
    with pytest.raises(ConfigError, match="data.free-train-users"):
        RunConfig.from_mapping({**default_mapping(), "data.free-train-users": -1})


def test_the_offset_wraps_around_so_that_the_reverse_split_swaps_training_and_test_users(dataset):
    forward_train, forward_test = split_users(dataset, train_users=0, test_users=4, free_train_users=4)
    reverse_train, reverse_test = split_users(dataset, train_users=0, test_users=4, free_train_users=4, offset=4)
    assert [u.user_id for u in reverse_train] == [u.user_id for u in forward_test]
    assert [u.user_id for u in reverse_test] == [u.user_id for u in forward_train]
    assert all(u.golds for u in reverse_train) and not any(u.golds for u in reverse_test)


def test_an_offset_past_the_last_user_is_refused_with_its_value(dataset):
    with pytest.raises(ConfigError, match="data.user-offset is 8"):
        split_users(dataset, train_users=1, test_users=1, offset=8)
