# gunicorn reads $PORT itself through this file, as Heroku's getting-started apps do.
import os

bind = ["0.0.0.0:" + os.environ.get("PORT", "5000")]
workers = 1
accesslog = "-"
