"""The time-based split over user_histories.json (shared.data.load_timeline, load_split(split="timeline"))."""

from __future__ import annotations

import json

import pytest

from shared.config import RunConfig, default_mapping
from shared.data import TIMELINE_FILE, load_split, load_timeline
from shared.errors import ConfigError, DataFormatError
from shared.tasks import get_task
from shared.users import split_users

LAMP3 = get_task("LaMP-3")


def history_file(tmp_path, users=None, name=TIMELINE_FILE):
    if users is None:
        users = [
            {
                "user": f"u{u}",
                "source_question_id": f"{u}00",
                "n_items": 6 + u,
                "items": [
                    {"id": f"{u}_h{i}", "text": f"user {u} review {i}", "score": str(1 + (i + u) % 5)}
                    for i in range(6 + u)
                ],
            }
            for u in range(3)
        ]
    path = tmp_path / name
    path.write_text(json.dumps(users))
    return path


def test_questions_profiles_and_golds_follow_the_history(tmp_path):
    path = history_file(tmp_path)
    raw = json.loads(path.read_text())
    ds = load_split(tmp_path, "LaMP-3", "timeline", timeline_questions=3)
    assert ds.users() == ["u0", "u1", "u2"] and len(ds.questions) == 9
    for q in ds.questions:
        user = next(r for r in raw if r["user"] == q.user_id)
        i = int(q.id.rsplit("_q", 1)[1])
        assert q.id == f"{user['source_question_id']}_q{i}"
        assert i >= len(user["items"]) - 3  # the last three reviews are the questions
        assert q.input == LAMP3.instruction + user["items"][i]["text"]
        assert q.query == user["items"][i]["text"]
        assert [dict(p) for p in q.profile] == user["items"][:i]  # strictly before the question, in order
        assert ds.golds[q.id] == user["items"][i]["score"]
        assert user["items"][i]["id"] not in {p["id"] for p in q.profile}  # its own gold is not in its profile


def test_profiles_share_the_items_instead_of_copying(tmp_path):
    ds = load_timeline(history_file(tmp_path), "LaMP-3", 3)
    first, second = [q for q in ds.questions if q.user_id == "u2"][:2]
    assert all(a is b for a, b in zip(first.profile, second.profile))


def test_history_protocol_trains_only_before_the_first_question(tmp_path):
    history_file(tmp_path)
    ds = load_split(tmp_path, "LaMP-3", "timeline", timeline_questions=2)
    train, test = split_users(ds, train_users=0, test_users=0, protocol="history")
    assert train == test and len(test) == 3
    for user in test:
        n = 6 + int(user.user_id[1:])
        assert [p["id"] for p in user.history] == [f"{user.user_id[1:]}_h{i}" for i in range(n - 2)]
        assert not user.golds and len(user.questions) == 2


@pytest.mark.parametrize(
    "edit, index, field, needle",
    [
        (
            lambda u: u[1].update(items=u[1]["items"][:4], n_items=4),
            1,
            "items",
            "user 'u1' has 4 items; data.timeline-questions=3 needs at least 5",
        ),
        (lambda u: u[0]["items"][2].update(score="6"), 0, "items[2].score", "'6' is not one of"),
        (lambda u: u[2]["items"][2].update(score="4.5"), 2, "items[2].score", "'4.5' is not one of"),
        (lambda u: u[0]["items"][3].pop("text"), 0, "items[3].text", "missing"),
        (lambda u: u[2].update(n_items=99), 2, "n_items", "n_items is 99 but items holds 8"),
        (lambda u: u[2].update(user="u0"), 2, "user", "duplicate user 'u0'"),
        (lambda u: u[1].pop("items"), 1, "items", "missing"),
    ],
)
def test_bad_histories_name_the_file_user_and_field(tmp_path, edit, index, field, needle):
    users = json.loads(history_file(tmp_path).read_text())
    edit(users)
    path = history_file(tmp_path, users)
    with pytest.raises(DataFormatError) as info:
        load_split(tmp_path, "LaMP-3", "timeline", timeline_questions=3)
    assert (info.value.path, info.value.index, info.value.field) == (str(path), index, field)
    assert needle in str(info.value)


def test_missing_file_and_bad_settings(tmp_path):
    with pytest.raises(DataFormatError, match=f"{TIMELINE_FILE}: file not found"):
        load_split(tmp_path, "LaMP-3", "timeline")
    with pytest.raises(DataFormatError, match="not a directory"):
        load_split(tmp_path / "nowhere", "LaMP-3", "timeline")
    history_file(tmp_path)
    with pytest.raises(ConfigError, match="data.timeline-questions"):
        load_split(tmp_path, "LaMP-3", "timeline", timeline_questions=0)
    with pytest.raises(ConfigError, match="LaMP-7"):
        load_split(tmp_path, "LaMP-7", "timeline")
    with pytest.raises(ConfigError, match="'data.timeline-questions' must be >= 1"):
        RunConfig.from_mapping({**default_mapping(), "data.timeline-questions": 0})
    assert RunConfig.from_mapping({**default_mapping(), "data.timeline-questions": 7}).timeline_questions == 7
    assert default_mapping()["data.timeline-questions"] == 40


def test_real_histories(lamp_data):
    folder = lamp_data / "lamp3"
    raw = json.loads((folder / TIMELINE_FILE).read_text())
    ds = load_split(folder, "LaMP-3", "timeline", timeline_questions=40)
    assert len(ds.questions) == 240 and len(ds.users()) == 6
    by_user = {r["user"]: r for r in raw}
    for q in ds.questions[::7]:
        items = by_user[q.user_id]["items"]
        i = len(q.profile)
        assert [dict(p) for p in q.profile] == items[:i] and ds.golds[q.id] == str(items[i]["score"])
        assert i >= len(items) - 40
    # the 30 dev questions are the last five of each user: the same ids, inputs, profiles and golds
    dev = load_split(folder, "LaMP-3", "dev")
    mine = {q.id: q for q in ds.questions}
    for q in dev.questions:
        assert mine[q.id].input == q.input and len(mine[q.id].profile) == len(q.profile)
        assert ds.golds[q.id] == dev.golds[q.id]
    with pytest.raises(DataFormatError, match="has 405 items; data.timeline-questions=404 needs at least 406"):
        load_split(folder, "LaMP-3", "timeline", timeline_questions=404)


def test_federated_nodes_load_the_same_split(tmp_path):
    from client.node import resolve_user
    from shared.protocol import NodeRole

    history_file(tmp_path)
    cfg = RunConfig.from_mapping(
        {
            **default_mapping(),
            "data.task": "LaMP-3",
            "data.dir": str(tmp_path),
            "data.split": "timeline",
            "data.timeline-questions": 2,
            "data.protocol": "history",
            "data.test-users": 3,
        }
    )
    user, role = resolve_user(cfg, {"partition-id": 1})
    assert role is NodeRole.BOTH and user.user_id == "u1"
    assert [q.id for q in user.questions] == ["100_q5", "100_q6"] and len(user.history) == 5
