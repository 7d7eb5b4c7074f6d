#!/usr/bin/env python3
"""Adds NinjaOne's OAuth token endpoint to ninjaone.json. The vendor OpenAPI document declares
bearer auth only (no token URL); this operation is written from the NinjaOne PowerShell module's
token request (form fields and response fields it reads). Standard library only."""
import json

SOURCE = {
    "repository": "homotechsual/NinjaOne",
    "path": "Source/Public/PSModule/Connect/Connect-NinjaOne.ps1",
    "commit": "49cc78c932615fb3f80a11e8c60817cb94d81387",
    "note": "Not in the vendor OpenAPI document; written from the module's token request "
    "(POST ws/oauth/token, ContentType application/x-www-form-urlencoded, fields grant_type, client_id, "
    "client_secret, refresh_token | code+redirect_uri, scope; reads token_type, access_token, expires_in, "
    "refresh_token).",
}
TOKEN = {
    "post": {
        "operationId": "oauthToken",
        "x-source": SOURCE,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type", "client_id", "client_secret"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["authorization_code", "refresh_token", "client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "refresh_token": {"type": "string"},
                            "code": {"type": "string"},
                            "redirect_uri": {"type": "string"},
                            "scope": {"type": "string"},
                        },
                        "additionalProperties": False,
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "token",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["access_token"],
                            "properties": {
                                "access_token": {"type": "string"},
                                "token_type": {"type": "string"},
                                "expires_in": {"type": "integer"},
                                "scope": {"type": "string"},
                                "refresh_token": {"type": "string"},
                            },
                        }
                    }
                },
            }
        },
    }
}

with open("ninjaone.json") as f:
    doc = json.load(f)
doc["paths"]["/ws/oauth/token"] = TOKEN
doc["paths"] = dict(sorted(doc["paths"].items()))
with open("ninjaone.json", "w") as f:
    json.dump(doc, f, indent=1, ensure_ascii=False)
    f.write("\n")
