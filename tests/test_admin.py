"""The Django admin, as an operator (a real superuser) sees it."""

from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from rankings.models import TopN
from scores.models import ApiKey, Score
from tasks.beat import schedules_install
from tests.checks import make_score


def test_it_lists_leaderboards(admin_client, make_board):
    make_board(slug="chess-blitz")
    response = admin_client.get(reverse("admin:rankings_leaderboard_changelist"))
    assert response.status_code == 200
    assert b"chess-blitz" in response.content


def test_it_lists_scores_and_finds_one_by_user(admin_client, make_board):
    board = make_board()
    make_score(board, "alice-42", 10)
    make_score(board, "bob-7", 20)
    url = reverse("admin:scores_score_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b"alice-42" in response.content and b"bob-7" in response.content

    response = admin_client.get(url, {"q": "alice-42"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list.values_list("user_id", flat=True)) == ["alice-42"]
    assert b"alice-42" in response.content and b"bob-7" not in response.content


def test_it_lists_top_n_tables(admin_client, make_board):
    board = make_board(slug="ranked")
    response = admin_client.get(reverse("admin:rankings_topn_changelist"))
    assert response.status_code == 200
    assert TopN.objects.filter(leaderboard=board).exists()
    assert b"ranked" in response.content


def test_it_lists_api_keys_without_their_secret(admin_client):
    key, raw = ApiKey.generate(name="game-server")
    response = admin_client.get(reverse("admin:scores_apikey_changelist"))
    assert response.status_code == 200
    assert b"game-server" in response.content
    assert key.prefix.encode() in response.content
    assert raw.encode() not in response.content


def test_it_lists_beat_schedules(admin_client):
    schedules_install()
    response = admin_client.get(reverse("admin:django_celery_beat_periodictask_changelist"))
    assert response.status_code == 200
    for task in PeriodicTask.objects.exclude(name__startswith="celery."):
        assert task.name.encode() in response.content


def test_it_shows_a_top_n_read_only(admin_client, make_board):
    top = TopN.objects.get(leaderboard=make_board())
    url = reverse("admin:rankings_topn_change", args=[top.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert b'name="period"' not in response.content and b'name="version"' not in response.content

    version = top.version
    response = admin_client.post(url, {"period": "hacked", "version": "999"})
    assert response.status_code == 403
    top.refresh_from_db()
    assert (top.period, top.version) == ("all", version)


def test_it_refuses_to_add_or_delete_a_top_n(admin_client, make_board):
    top = TopN.objects.get(leaderboard=make_board())
    assert admin_client.get(reverse("admin:rankings_topn_add")).status_code == 403
    response = admin_client.post(reverse("admin:rankings_topn_delete", args=[top.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert TopN.objects.filter(pk=top.pk).exists()


def test_it_shows_a_score_read_only(admin_client, make_board):
    board = make_board()
    score = make_score(board, "carol", 5)
    url = reverse("admin:scores_score_change", args=[score.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b"carol" in response.content
    assert b'name="_save"' not in response.content

    response = admin_client.post(
        url, {"user_id": "carol", "leaderboard": board.pk, "period": "all", "score": "999999", "sort_key": "-999999"}
    )
    assert response.status_code == 403
    score.refresh_from_db()
    assert score.score == 5


def test_it_refuses_to_add_a_score(admin_client, make_board):
    board = make_board()
    response = admin_client.post(
        reverse("admin:scores_score_add"), {"user_id": "mallory", "leaderboard": board.pk, "score": "1"}
    )
    assert response.status_code == 403
    assert not Score.objects.filter(user_id="mallory").exists()


def test_it_refuses_to_add_an_api_key(admin_client):
    count = ApiKey.objects.count()
    assert admin_client.get(reverse("admin:scores_apikey_add")).status_code == 403
    response = admin_client.post(reverse("admin:scores_apikey_add"), {"name": "sneaky", "is_active": "on"})
    assert response.status_code == 403
    assert ApiKey.objects.count() == count


def test_it_keeps_a_boards_ranking_fields_fixed(admin_client, make_board):
    board = make_board(slug="fixed", name="Old name", top_n=10)
    url = reverse("admin:rankings_leaderboard_change", args=[board.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b'name="name"' in response.content and b'name="top_n"' in response.content  # as the API's PATCH
    assert b'name="order"' not in response.content and b'name="reset"' not in response.content

    form = {"name": "New name", "top_n": "10", "min_points": "0", "max_points": str(board.max_points)}
    response = admin_client.post(url, {**form, "order": "asc", "slug": "moved", "reset": "daily"})
    assert response.status_code == 302, response.content
    board.refresh_from_db()
    assert (board.name, board.top_n, board.order, board.slug, board.reset) == ("New name", 10, "desc", "fixed", "never")


def test_it_keeps_admin_pages_from_anonymous_users(client):
    response = client.get(reverse("admin:scores_score_changelist"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def _change(admin_client, board, **fields):
    form = {"name": board.name, "top_n": board.top_n, "min_points": board.min_points, "max_points": board.max_points}
    return admin_client.post(reverse("admin:rankings_leaderboard_change", args=[board.pk]), {**form, **fields})


def test_it_changes_a_boards_size_through_the_service_that_rebuilds_its_top_n(admin_client, make_board):
    board = make_board(slug="resized", top_n=3)
    for n in range(10):
        make_score(board, f"u{n}", n + 1)
    response = _change(admin_client, board, top_n=8)
    assert response.status_code == 302, response.content
    board.refresh_from_db()
    assert board.top_n == 8
    top = TopN.objects.get(leaderboard=board, period=board.current_period())
    assert [row[0] for row in top.entries] == [f"u{n}" for n in range(9, 1, -1)]


def test_it_refuses_a_points_range_upside_down(admin_client, make_board):
    board = make_board(slug="ranged", min_points=0, max_points=100)
    response = _change(admin_client, board, min_points=200)
    assert response.status_code == 200 and b"Must be at least min_points" in response.content
    board.refresh_from_db()
    assert (board.min_points, board.max_points) == (0, 100)


def test_it_resets_a_manual_board_now_and_leaves_the_others(admin_client, make_board):
    manual, daily = make_board(slug="season", reset="manual"), make_board(slug="days", reset="daily")
    response = admin_client.post(
        reverse("admin:rankings_leaderboard_changelist"),
        {"action": "reset_now", "_selected_action": [manual.pk, daily.pk]},
        follow=True,
    )
    said = sorted(str(message) for message in response.context["messages"])
    assert said == ["days resets daily, not manually: left as it is.", "season: v1 closed, v2 current."], said
    manual.refresh_from_db()
    daily.refresh_from_db()
    assert len(manual.manual_resets) == 1 and daily.manual_resets == []
    assert manual.current_period() == "v2"
