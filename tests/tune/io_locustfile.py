"""make tune's oracle, waiting-bound: every request waits 100 ms (a blocking
sleep in the app), no think time. Its best class is known: gevent, or
gthread with a thread for every client."""

from locust import FastHttpUser, constant, task


class Waiting(FastHttpUser):
    wait_time = constant(0)

    @task
    def io(self):
        self.client.get("/work/io?ms=100", name="/work/io")
