def test_append_roundtrip(api):
    r = api.post("/api/v1/streams/user-1/events", {"events": [{"type": "UserCreated", "data": {"a": 1}}]}, format="json")
    assert r.status_code == 201, r.content
    r = api.get("/api/v1/streams/user-1/events")
    assert r.json()["results"][0]["type"] == "UserCreated"
