"""make tune's waiting-bound oracle: every request waits 100 ms (a blocking
sleep in the app), no think time. Its best class is known: gevent, or
gthread with a thread for every client. The load is set by a LoadTestShape
that never ends, a common way to write a steady load: locust ignores
--run-time with a shape, so make tune must stop each run itself."""

from locust import FastHttpUser, LoadTestShape, constant, task

USERS = 32


class Waiting(FastHttpUser):
    wait_time = constant(0)

    @task
    def io(self):
        self.client.get("/work/io?ms=100", name="/work/io")


class Steady(LoadTestShape):
    def tick(self):
        return USERS, USERS
