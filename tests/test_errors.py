"""Every answer under /api/ is JSON, also where no DRF view words it: a path no route
matches, a route's path without its trailing slash, a request refused before routing and
a server error. Everywhere else Django's own HTML error pages stay.

This module is also the URL configuration of the server-error tests: the project's routes
plus one that fails under /api/ and one that fails outside it.
"""

import pytest
from django.urls import path

from leaderboard_project import urls as project_urls
from tests.conftest import bearer


def _fail(request):
    raise RuntimeError("a bug, not bad input")


urlpatterns = [
    *project_urls.urlpatterns,
    path("api/v1/fails", _fail),
    path("boards-fail", _fail),
]
handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500


def assert_json_detail(response, status: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str), body
    return body["detail"]


def assert_html(response, status: int) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("text/html"), response["Content-Type"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/nope"),
        ("get", "/api"),
        ("get", "/api/"),
        ("get", "/api/v1/leaderboards/x/nothing"),
        ("get", "/api/v1/leaderboards/x/nothing/"),
        ("post", "/api/v1/zzz"),
        ("delete", "/api/v1/users/a/b/c"),
        ("put", "/api/v2/leaderboards/"),
        ("head", "/api/nope"),
    ],
)
def test_it_answers_a_json_404_for_an_unknown_api_path(api, db, method, url):
    response = getattr(api, method)(url)
    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/json"
    if method != "head":
        assert url in assert_json_detail(response, 404)


@pytest.mark.parametrize("method", ["get", "post", "delete"])
@pytest.mark.parametrize("url", ["/api/v1/leaderboards", "/api/v1/leaderboards/golf", "/api/schema"])
def test_it_answers_a_json_404_naming_the_route_for_a_path_without_its_slash(api, make_board, method, url):
    # Not CommonMiddleware's HTML redirect, which also turns a POST into a GET and drops
    # its body: a board creation sent there would come back as the list of boards.
    make_board(slug="golf")
    response = getattr(api, method)(url, {"slug": "new", "name": "New"}, format="json")
    assert f"{url}/" in assert_json_detail(response, 404)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("put", "/api/v1/leaderboards/"),
        ("patch", "/api/v1/leaderboards/golf/top"),
        ("post", "/api/v1/leaderboards/golf/ranks"),
        ("delete", "/api/v1/leaderboards/golf/periods"),
    ],
)
def test_it_answers_a_json_405_for_a_wrong_method(api, admin_key, make_board, method, url):
    make_board(slug="golf")
    response = getattr(bearer(api, admin_key), method)(url)
    assert method.upper() in assert_json_detail(response, 405)
    assert response["Allow"]


@pytest.mark.parametrize("url", ["/boards/does-not-exist/", "/nope", "/apix/nope", "/boards/x/y/"])
def test_it_keeps_html_404_pages_outside_the_api(client, db, url):
    response = client.get(url)
    assert_html(response, 404)
    assert b"<h1>Not Found</h1>" in response.content


def test_it_answers_a_json_400_for_a_bad_host_under_the_api(api, db):
    assert "Bad request" in assert_json_detail(api.get("/api/v1/leaderboards/", HTTP_HOST="evil.example"), 400)


def test_it_keeps_the_html_400_page_for_a_bad_host_outside_the_api(client, db):
    assert_html(client.get("/boards/", HTTP_HOST="evil.example"), 400)


@pytest.mark.urls(__name__)
def test_it_answers_a_json_500_under_the_api_and_the_html_page_elsewhere(api, client, db):
    api.raise_request_exception = client.raise_request_exception = False
    detail = assert_json_detail(api.get("/api/v1/fails"), 500)
    assert "bug" not in detail, "the error's text stays in the log"
    assert_html(client.get("/boards-fail"), 500)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/leaderboards/%00/top", "/api/v1/leaderboards/%00/"])
def test_it_refuses_a_nul_byte_in_the_path_with_a_400(api, url):
    assert "NUL byte" in assert_json_detail(api.get(url), 400)


@pytest.mark.django_db
def test_it_refuses_a_cursor_that_decodes_to_a_nul_byte_with_a_400(api):
    # base64 of "p=%00": a position no link of ours ever held.
    body = api.get("/api/v1/leaderboards/?cursor=cD0lMDA%3D").json()
    assert api.get("/api/v1/leaderboards/?cursor=cD0lMDA%3D").status_code == 400
    assert body == {"cursor": ["Invalid cursor: pass back a next or previous link."]}


@pytest.mark.django_db
def test_it_refuses_a_nul_byte_outside_the_api_with_a_plain_400(client):
    response = client.get("/boards/%00/")
    assert response.status_code == 400 and b"NUL byte" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["after=%00", "limit=%00", "period=a%00b", "%00=1", "ids=a,b%00"],
)
def test_it_refuses_a_nul_byte_in_the_query_with_a_400_that_names_it(api, client, make_board, query):
    make_board(slug="b")
    for url in ("/api/v1/leaderboards/b/top", "/api/v1/leaderboards/b/users", "/api/v1/leaderboards/"):
        assert "query string" in assert_json_detail(api.get(f"{url}?{query}"), 400)
    for url in ("/boards/", "/boards/b/", "/admin/rankings/leaderboard/"):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 400 and b"query string holds a NUL byte" in response.content


@pytest.mark.django_db
def test_it_names_too_many_query_fields_in_a_json_400(api, client, make_board):
    make_board(slug="b")
    query = "&".join(f"f{n}=1" for n in range(1001))
    detail = assert_json_detail(api.get(f"/api/v1/leaderboards/b/top?{query}"), 400)
    assert detail == "Too many query fields: at most 1000."
    assert_html(client.get(f"/boards/?{query}"), 400)
