"""make tune's oracle, CPU-bound: every request burns 20 ms of CPU in
Python, no think time. Its best configuration is known: about one worker
per core, sync or gthread; never gevent, whose greenlets cannot share a
busy CPU."""

from locust import FastHttpUser, constant, task


class Burning(FastHttpUser):
    wait_time = constant(0)

    @task
    def cpu(self):
        self.client.get("/work/cpu?ms=20", name="/work/cpu")
