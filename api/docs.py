"""GET /api/openapi.json and the interactive docs at /api/docs, offline.

Swagger UI's files come from the swagger-ui-bundle package and are served by
this app: nothing is fetched from a CDN, so the docs work on a machine with no
internet. Neither needs the key (they hold no secrets, and a browser cannot
send a header to open a page); the docs' "Authorize" button sets X-Auth-Key
for "Try it out".
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path

from api.openapi import build_document

bp = Blueprint("docs", __name__, url_prefix="/api")

# Only what the page loads: not the bundle's sample index page or its source maps.
ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
          "favicon-32x32.png", "favicon-16x16.png"}
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Content processor API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script src="{preset}"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{spec}", dom_id: "#swagger-ui", deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout", validatorUrl: null
    }});
  </script>
</body>
</html>
"""


@bp.get("/openapi.json")
def openapi_document():
    # Built once per app: the routes and schemas do not change while it runs.
    document = current_app.extensions.get("openapi")
    if document is None:
        document = current_app.extensions["openapi"] = build_document(current_app)
    return jsonify(document)


@bp.get("/docs")
def docs_page():
    def asset(name: str) -> str:
        return url_for("docs.docs_asset", name=name)

    # validatorUrl: null stops Swagger UI from sending the document to
    # validator.swagger.io, the one thing it would fetch from outside.
    html = PAGE.format(css=asset("swagger-ui.css"), icon=asset("favicon-32x32.png"),
                       bundle=asset("swagger-ui-bundle.js"),
                       preset=asset("swagger-ui-standalone-preset.js"),
                       spec=url_for("docs.openapi_document"))
    return Response(html, mimetype="text/html")


@bp.get("/docs/<name>")
def docs_asset(name: str):
    if name not in ASSETS:
        abort(404)
    return send_from_directory(str(swagger_ui_path), name, max_age=86400)
