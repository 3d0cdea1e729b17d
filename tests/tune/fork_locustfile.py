"""A fork's own load profile, for the fork tests/integration/test_stack.py
builds (its one route, `/`, and nothing of the demo), with a guard like the
load test's own: only the stack's nginx may be targeted."""

from urllib.parse import urlsplit

from locust import FastHttpUser, between, events, task


@events.init.add_listener
def only_nginx(environment, **_kwargs):
    if urlsplit(environment.host or "").hostname != "nginx":
        raise SystemExit(f"host {environment.host!r} is not the stack's nginx")


class Visitor(FastHttpUser):
    wait_time = between(0.05, 0.1)

    @task
    def hello(self):
        self.client.get("/", name="/")
