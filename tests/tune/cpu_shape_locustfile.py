"""make tune's CPU-bound oracle (cpu_locustfile.py) with the load set by a
LoadTestShape that never ends: make tune must stop each run itself. Never
gevent, whose greenlets cannot share a busy CPU."""

from locust import FastHttpUser, LoadTestShape, constant, task

USERS = 8


class Burning(FastHttpUser):
    wait_time = constant(0)

    @task
    def cpu(self):
        self.client.get("/work/cpu?ms=20", name="/work/cpu")


class Steady(LoadTestShape):
    def tick(self):
        return USERS, USERS
