"""/storage/objects/{key}: with local storage (the embedded default) the API plays the object
store for direct uploads (hustlexp.api.uploads). As at S3, a signed URL is its own credential:
no bearer token; an avatar is public once confirmed. With S3 storage these answer 404."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate

blp = Blueprint("objects", __name__, url_prefix="/storage", description="Local object storage (signed URLs)")


class StoredSchema(Schema):
    key = fields.String(required=True)
    size = fields.Integer(required=True)


class SignedQuerySchema(Schema):
    expires = fields.Integer(metadata={"description": "Unix time the URL stops working"})
    signature = fields.String(validate=validate.Length(max=128))


@blp.route("/objects/<path:key>")
class LocalObject(MethodView):
    @blp.arguments(SignedQuerySchema, location="query")
    @blp.doc(requestBody={"required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}})
    @blp.response(200, StoredSchema)
    @blp.alt_response(403, response="FORBIDDEN", description="Expired, or not what the URL was signed for")
    @blp.alt_response(404, response="NOT_FOUND", description="Not local storage, or no such object")
    def put(self, query: dict[str, Any], key: str) -> Any:
        """Local storage only: the target of a presigned upload URL (signed, no bearer token),
        with the Content-Type and Content-Length it was signed for."""
        return respond(services().uploads.receive_local(
            key, expires=query.get("expires", 0), signature=query.get("signature", ""),
            content_type=request.headers.get("Content-Type"), data=request.get_data()))

    @blp.arguments(SignedQuerySchema, location="query")
    @blp.response(200, content_type="application/octet-stream", description="The object's bytes")
    @blp.alt_response(403, response="FORBIDDEN", description="Expired or badly signed")
    @blp.alt_response(404, response="NOT_FOUND", description="No such object, or not local storage")
    def get(self, query: dict[str, Any], key: str) -> Any:
        """Local storage only: a signed download URL (avatars need no signature)."""
        data, content_type = respond(services().uploads.read_local(
            key, expires=query.get("expires"), signature=query.get("signature")))
        return Response(data, mimetype=content_type, headers={"Cache-Control": "private, max-age=300"})
