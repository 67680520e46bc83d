"""``app`` for gunicorn: ``gunicorn -c gunicorn.conf.py wsgi:app``."""
from app import create_app
from config import load_config
from dev_key import serving_config

app = create_app(serving_config(load_config(require_auth_key=False)))
