"""make tune's oracle, database-bound: every request waits 100 ms inside
PostgreSQL on a pooled connection, no think time. Its best configuration is
known: enough connections in the pools for every client, within the
connection budget."""

from locust import FastHttpUser, constant, task


class Querying(FastHttpUser):
    wait_time = constant(0)

    @task
    def db(self):
        self.client.get("/db/sleep?ms=100", name="/db/sleep")
