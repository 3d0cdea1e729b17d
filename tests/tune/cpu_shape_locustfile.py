"""make tune's CPU-bound oracle: every request burns 20 ms of CPU, no think
time. Its best is about one worker per core, never gevent, whose greenlets
cannot share a busy CPU. The load is set by a LoadTestShape that never
ends: make tune must stop each run itself."""

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
