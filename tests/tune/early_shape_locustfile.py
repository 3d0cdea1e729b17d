"""A LoadTestShape that ends the load after 2 s, before any make tune run's
end: the run is measured for as long as it ran, and the report says so."""

from locust import FastHttpUser, LoadTestShape, constant, task

USERS = 8
SECONDS = 2


class Waiting(FastHttpUser):
    wait_time = constant(0)

    @task
    def io(self):
        self.client.get("/work/io?ms=20", name="/work/io")


class Short(LoadTestShape):
    def tick(self):
        return (USERS, USERS) if self.get_run_time() < SECONDS else None
