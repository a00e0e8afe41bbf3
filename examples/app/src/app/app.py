"""The example app: a Flask service that counts visits in Redis.

GET /        increments the counter `hits` in the database and answers
             "hits N (version V)"; V is the APP_VERSION environment variable.
GET /health  200 "ok" when the database answers PING, else 503.

The database is reached through the link alias `db` (agent links write /etc/hosts).
"""
import os

import redis
from flask import Flask

app = Flask(__name__)
db = redis.Redis(host=os.environ.get("DB_HOST", "db"), port=6379, socket_timeout=2)


@app.get("/")
def index():
    hits = db.incr("hits")
    return f"hits {hits} (version {os.environ.get('APP_VERSION', '?')})\n"


@app.get("/health")
def health():
    try:
        db.ping()
    except redis.RedisError as e:
        return f"database: {e}\n", 503
    return "ok\n"
