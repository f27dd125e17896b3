"""What a visitor of the site would see, in one round trip (tasks/health.yml): WordPress's own status from the
installer's helper, then, when WordPress is ready, the front page (again until it answers 200 or the time is up) and
the login page, fetched from the container's nginx with the site's name. Its request is its one argument (JSON);
it prints one JSON object, and the role's checks say what is wrong."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

request = json.loads(sys.argv[1])


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is the page's answer, with its location


OPENER = urllib.request.build_opener(NoRedirects, urllib.request.ProxyHandler({}))


def page(path):
    asked = urllib.request.Request("http://127.0.0.1" + path, headers={"Host": request["host"]})
    try:
        with OPENER.open(asked, timeout=30) as answer:
            return {"status": answer.status, "msg": answer.reason, "content": answer.read().decode("utf-8", "replace")}
    except urllib.error.HTTPError as answer:
        seen = {"status": answer.code, "msg": answer.reason, "content": answer.read().decode("utf-8", "replace")}
        if answer.headers.get("Location"):
            seen["location"] = answer.headers["Location"]
        return seen
    except OSError as error:
        return {"status": -1, "msg": str(error), "content": ""}


def wordpress_status():
    helper = subprocess.run(
        ["runuser", "-u", request["user"], "--", "php", "/usr/local/lib/proxmoxwp-wordpress.php", "status"],
        input=json.dumps({"root": request["root"], "host": request["host"]}),
        capture_output=True,
        text=True,
        check=False,
    )
    if helper.stdout.startswith("{"):
        return json.loads(helper.stdout)
    return {"error": f"The status helper stopped with exit status {helper.returncode}: {helper.stderr[:300]}"}


status = wordpress_status()
seen = {"status": status}
ready = "error" not in status and status.get("installed") and set(request["tables"]) <= set(status.get("tables", []))
if ready:
    deadline = time.monotonic() + request["timeout"]
    seen["front_page"] = page("/")
    while seen["front_page"]["status"] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        seen["front_page"] = page("/")
    seen["login_page"] = page("/wp-login.php")
print(json.dumps(seen))
