from conftest import runs, wait_job


def test_create_site_runs_the_create_playbook(api, worker, control_dir):
    answer = api.post(
        "/create-site",
        {"service_id": 17, "email": "a@example.com", "plan": "basic", "public_ip": "203.0.113.10"},
    )
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    job = wait_job(api, body["job_id"])
    assert job["state"] == "succeeded", job
    status = api.get("/status", service_id=17).get_json()
    assert status["state"] == "active"
    assert status["vmid"] == 100017
    recorded = runs(control_dir)
    assert recorded[0]["op"] == "site_create"
    assert recorded[0]["vars"]["admin_password"] == body["admin_password"]
