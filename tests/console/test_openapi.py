"""The API describes itself: OpenAPI 3 at /api/schema/, docs at /api/docs/ with no outside assets."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_schema_is_openapi_3_and_lists_every_event_store_operation(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = {
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post"}
    }
    assert operations >= {
        ("/api/v1/streams", "get"),
        ("/api/v1/streams/{stream}", "get"),
        ("/api/v1/streams/{stream}/events", "get"),
        ("/api/v1/streams/{stream}/events", "post"),
        ("/api/v1/events", "get"),
        ("/api/v1/events/{event_id}", "get"),
    }
    append = schema["paths"]["/api/v1/streams/{stream}/events"]["post"]
    assert set(append["responses"]) >= {"201", "400", "409"}
    assert "application/problem+json" in append["responses"]["409"]["content"]
    assert {"type": "http", "scheme": "bearer"} in schema["components"]["securitySchemes"].values()


def test_the_docs_page_loads_its_assets_from_this_server(browser_client):
    response = browser_client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "https://" not in page.split("<body")[0]
